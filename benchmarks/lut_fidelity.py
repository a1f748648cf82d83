"""How well a calibrated latency table predicts whole subnets measured on the device.

Builds (or reuses) the device's table, measures ``--fit + --held-out`` subnets whole (the
smallest of every resolution, then random ones; reference-normalized, ``--rounds`` shuffled
rounds), fits the calibration on the first ``--fit`` and reports, on the held-out random ones,
the share within ±10 % and the MAPE, uncalibrated and calibrated (target: >= 99 % within ±10 %,
MAPE <= 3 %, calibrated on <= 20 subnets). The
noise floor is the same figures between two independent measurements of the same subnets.

    python -m benchmarks.lut_fidelity [--device local|sshd] [--supernet ID] [--plot FILE.png] [--passes N]
        [--out TABLE.json]

``--out`` keeps the calibrated table (how the tables in ``latency_tables/`` are made).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._devices import add_device_args, device_spec
from ofa_edge.devices.sessions import open_session
from ofa_edge.lut.build import build_table
from ofa_edge.lut.table import PASSES, LatencyTable, SupernetRef, describe_calibration
from ofa_edge.lut.validate import fidelity, measure_subnets, validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_args(parser)
    parser.add_argument("--supernet", default="ofa_mbv3_d234_e346_k357_w1.0")
    parser.add_argument("--resolutions", default="160,176,192,208,224")
    parser.add_argument("--fit", type=int, default=20)
    parser.add_argument("--held-out", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--noise-subnets", type=int, default=30, help="held-out subnets measured twice")
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--out", type=Path, help="keep the calibrated table here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--passes", type=int, default=PASSES, help="the table's passes per op")
    args = parser.parse_args()
    supernet = SupernetRef.named(args.supernet)
    resolutions = [int(r) for r in args.resolutions.split(",")]
    with tempfile.TemporaryDirectory(prefix="ofa-edge-fidelity-") as tmp, device_spec(args) as spec:
        path = Path(tmp) / "lut.json"
        with open_session(spec) as session:
            began = time.perf_counter()
            build_table(session, supernet, resolutions, path, threads=args.threads, passes=args.passes)
            built = time.perf_counter() - began
            samples = args.fit + args.held_out
            report = validate(session, path, samples, args.seed, args.plot, rounds=args.rounds, fit=args.fit)
            validated = time.perf_counter() - began - built
            table = LatencyTable.load(path)
            points = [p for p in report.points if not p.fitted][: args.noise_subnets]
            held = [p.arch for p in points]
            first = np.array([p.measured_ms for p in points])
            again = measure_subnets(session, table, held, rounds=args.rounds, seed=args.seed + 1000)
        if args.out:
            table.save(args.out)
    noise = fidelity(again, first)
    assert table.reference is not None
    timings = table.reference.timings_ms
    before, after = report.uncalibrated, report.calibrated
    print(f"device: {spec.name} ({spec.description}), threads {args.threads}, supernet {args.supernet}")
    print(f"table ({len(resolutions)} resolutions) built in {built:.0f} s; subnets timed: {validated:.0f} s")
    print(
        f"reference level {table.reference.median_ms:.4f} ms; its {len(timings)} timings during the build "
        f"ranged {min(timings):.4f}-{max(timings):.4f} ms (the device's speed moving)"
    )
    print(
        f"calibration on {report.fitted_on} subnets: {describe_calibration(report.calibration)}; "
        f"{report.held_out} held out, {args.rounds} rounds each"
    )
    for label, f in (("uncalibrated", before), ("calibrated", after)):
        print(
            f"{label:>13s}: {100 * f.within_10pct:.1f} % within ±10 %, MAPE {f.mape:.2f} %, "
            f"Spearman {f.spearman:.3f}"
        )
    print(
        f"  noise floor: {100 * noise.within_10pct:.1f} % within ±10 %, MAPE {noise.mape:.2f} % "
        f"between two measurements of {len(held)} held-out subnets"
    )
    if args.plot:
        print(f"plot: {args.plot}")
    if args.out:
        print(f"table: {args.out}")


if __name__ == "__main__":
    main()
