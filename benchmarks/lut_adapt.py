"""A table adapted from another device's (``lut adapt``) against the device's own full build.

On the target device (``--device sshd``: a test-bed sshd, cgroup-limited with ``--cpu-quota``;
``local``; ``pi``: the emulated Raspberry Pi 4), builds its own table and validates it (the
reference: the full build's device time and held-out fidelity), then adapts ``--source`` (by
default the shipped table of this machine, ``testbed-local``) with each ``--samples`` count and
reports the device time of its samples (the run's time times their share) and the fidelity on
``--held-out`` random subnets each adaptation measures beside them (the same subnets every time:
seeded), with the common factor alone for comparison.

    python -m benchmarks.lut_adapt [--device sshd] [--cpu-quota 0.5] [--samples 5,10,20]
        [--held-out 30] [--resolutions 24,32,40]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from benchmarks._devices import add_device_args, device_spec
from ofa_edge.devices.sessions import open_session
from ofa_edge.lut.adapt import adapt
from ofa_edge.lut.build import build_table
from ofa_edge.lut.table import LatencyTable
from ofa_edge.lut.validate import Fidelity, validate

SHIPPED = Path(__file__).parent.parent / "latency_tables" / "testbed-local_ofa-mbv3-cifar10_fp32_t1.json"


def row(name: str, seconds: float, fid: Fidelity) -> str:
    return (
        f"| {name} | {seconds:.0f} | {100 * fid.within_10pct:.0f} % | {fid.mape:.2f} % | {fid.spearman:.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_args(parser)
    parser.add_argument("--source", type=Path, default=SHIPPED, help="the table to adapt")
    parser.add_argument("--samples", default="5,10,20", help="sample counts to adapt with")
    parser.add_argument("--held-out", type=int, default=30)
    parser.add_argument("--resolutions", default="24,32,40", help="of the target's own full build")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=3, help="of the target's own full build")
    args = parser.parse_args()
    source = LatencyTable.load(args.source)
    resolutions = [int(r) for r in args.resolutions.split(",")]
    source = dataclasses.replace(source, entries={r: source.entries[r] for r in resolutions})
    lines = ["| table | device s | held out ±10 % | MAPE | Spearman |", "| --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory(prefix="ofa-edge-adapt-") as tmp, device_spec(args) as spec:
        folder = Path(tmp)
        source_path = folder / "source.json"
        source.save(source_path)
        with open_session(spec) as session:
            began = time.perf_counter()
            own = folder / "own.json"
            build_table(
                session, source.supernet, resolutions, own, threads=source.threads, passes=args.passes
            )
            fit = 20
            report = validate(session, own, fit + args.held_out, seed=1, rounds=args.rounds, fit=fit)
            full_s = time.perf_counter() - began
            lines.append(
                row(f"own full build ({args.passes} passes) + validate on {fit}", full_s, report.calibrated)
            )
            for n in (int(v) for v in args.samples.split(",")):
                adapted = adapt(
                    session,
                    source_path,
                    folder / f"adapted{n}.json",
                    samples=n,
                    held_out=args.held_out,
                    rounds=args.rounds,
                )
                assert adapted.held_out is not None and adapted.scale_only_held_out is not None
                seconds = adapted.device_seconds * n / (n + args.held_out)  # the samples' share
                kept = "one factor" if adapted.fit.ridge is None else f"per type, ridge {adapted.fit.ridge:g}"
                kept += ", calibration refitted" if adapted.fit.recalibrated else ", calibration rescaled"
                lines.append(row(f"adapted, {n} samples ({kept})", seconds, adapted.held_out))
                lines.append(row(f"  common factor alone, {n} samples", seconds, adapted.scale_only_held_out))
    print(f"{spec.name}: {source.device.name}'s table adapted; held out: {args.held_out} random subnets")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
