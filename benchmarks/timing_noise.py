"""How repeatable is a whole-subnet measurement, timed interleaved with the reference (the
agent's way) or bracketed by reference timings (the way for tools that time one model per run)?

Random subnets of a supernet are measured twice in each mode through the same device session
(modes alternate: bracketed, interleaved, bracketed, interleaved), each measurement the median
of ``--rounds`` shuffled rounds. The noise floor of a mode is the gap between its two
measurements of the same subnets (MAPE, share within ±10 %); a latency table cannot be checked
more precisely than that. Also printed: the reference's raw time in 9 timings right after.

    python -m benchmarks.timing_noise [--device local|sshd] [--supernet ofa-mbv3-cifar10]
        [--subnets 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._devices import add_device_args, device_spec
from ofa_edge.devices.sessions import open_session
from ofa_edge.lut.validate import fidelity
from ofa_edge.measure.models import export_subnets
from ofa_edge.measure.reference import reference_model
from ofa_edge.measure.timing import TIMINGS, timed_round, timed_rounds
from ofa_edge.supernet.registry import get_supernet_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_args(parser)
    parser.add_argument("--supernet", default="ofa-mbv3-cifar10")
    parser.add_argument("--subnets", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    spec = get_supernet_info(args.supernet).build().spec
    space, rng = spec.space, random.Random(args.seed)
    archs = [space.sample(rng) for _ in range(args.subnets)]
    reference, described = reference_model(spec, min(space.resolutions))
    measured: dict[str, list[np.ndarray]] = {"bracketed": [], "interleaved": []}
    seconds: dict[str, float] = {"bracketed": 0.0, "interleaved": 0.0}
    with tempfile.TemporaryDirectory(prefix="ofa-edge-noise-") as tmp, device_spec(args) as device:
        paths = export_subnets(spec, archs, Path(tmp))
        with open_session(device) as session:
            bench = dict(threads=args.threads, min_runs=20, min_seconds=0.3)
            for k, mode in enumerate(TIMINGS[::-1] * 2):  # bracketed, interleaved, ...
                began = time.perf_counter()
                ms, _ = timed_rounds(
                    session,
                    paths,
                    reference,
                    timing=mode,
                    rounds=args.rounds,
                    ref_ms=1.0,
                    seed=args.seed + k,
                    **bench,
                )
                seconds[mode] += time.perf_counter() - began
                measured[mode].append(np.array([ms[p.name] for p in paths]))
            _, refs, _ = timed_round(session, paths[:8], reference, timing="bracketed", ref_every=1, **bench)
    print(f"device: {device.name} ({device.description}), supernet {args.supernet}, reference {described}")
    print(
        f"{args.subnets} random subnets, each measurement the median of {args.rounds} rounds; "
        f"the reference's raw time in 9 timings after the runs: {min(refs):.4f}-{max(refs):.4f} ms"
    )
    print(f"{'timing':>12s} {'noise MAPE':>11s} {'within ±10 %':>13s} {'ratio, median':>14s} {'wall s':>7s}")
    for name, (first, second) in measured.items():
        noise = fidelity(second, first)
        print(
            f"{name:>12s} {noise.mape:10.2f}% {100 * noise.within_10pct:12.1f}% "
            f"{np.median(np.concatenate([first, second])):14.4f} {seconds[name]:7.0f}"
        )


if __name__ == "__main__":
    main()
