"""How long a full latency table takes to build, and how repeatable its entries are.

Builds the table for a supernet at five resolutions twice on one device: first with an empty
micro-model cache (export included), then again with the cache warm. Prints wall times, the
number of micro-benchmarks, and the median absolute difference between the two builds' entries
(target: full w1.0 space at 5 resolutions in <= 5 minutes on ``local``; difference <= 3 %).

    python -m benchmarks.lut_build [--device local|sshd] [--supernet ID] [--resolutions ...] [--bracketed]
        [--passes N] [--min-seconds S]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._devices import add_device_args, device_spec
from ofa_edge.devices.sessions import open_session
from ofa_edge.lut.build import build_table
from ofa_edge.lut.table import PASSES, SupernetRef


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_args(parser)
    parser.add_argument("--supernet", default="ofa_mbv3_d234_e346_k357_w1.0")
    parser.add_argument("--resolutions", default="160,176,192,208,224")
    parser.add_argument(
        "--bracketed", action="store_true", help="time the reference between ops, not interleaved"
    )
    parser.add_argument("--passes", type=int, default=PASSES, help="passes per build")
    parser.add_argument("--min-seconds", type=float, help="timing per op and pass (default: build_table's)")
    args = parser.parse_args()
    resolutions = [int(r) for r in args.resolutions.split(",")]
    supernet = SupernetRef.named(args.supernet)
    with tempfile.TemporaryDirectory(prefix="ofa-edge-lutbench-") as tmp, device_spec(args) as spec:
        os.environ["OFA_EDGE_CACHE"] = str(Path(tmp) / "cache")  # cold micro-model cache
        tables, walls = [], []
        for run in (1, 2):
            out = Path(tmp) / f"build{run}.json"
            began = time.perf_counter()
            with open_session(spec) as session:
                tables.append(
                    build_table(
                        session,
                        supernet,
                        resolutions,
                        out,
                        threads=args.threads,
                        passes=args.passes,
                        timing="bracketed" if args.bracketed else None,
                        **({"min_seconds": args.min_seconds} if args.min_seconds else {}),
                    )
                )
            walls.append(time.perf_counter() - began)
            print(f"build {run} ({'cold' if run == 1 else 'warm'} micro-model cache): {walls[-1]:.1f} s")
        first, second = ({k: e.median_ms for s in t.entries.values() for k, e in s.items()} for t in tables)
        rel = np.array([abs(second[k] - v) / v for k, v in first.items()])
        # Each build expresses entries at the median of its own reference timings; a different
        # level scales all entries alike (the calibration absorbs it). Without that one factor:
        scale = np.median([second[k] / v for k, v in first.items()])
        shape = np.array([abs(second[k] / scale - v) / v for k, v in first.items()])
        remeasured = sum(e.remeasured for s in tables[0].entries.values() for e in s.values())
    runtime = tables[0].runtime
    print(
        f"device: {spec.name} ({spec.description}), runtime {runtime.name} {runtime.version}, "
        f"threads {args.threads}"
    )
    print(
        f"supernet {args.supernet} at {resolutions}: {len(first)} micro-benchmarks (distinct ops), "
        f"{args.passes} pass(es), min_seconds {args.min_seconds or 'default'}"
    )
    print(f"wall time, cold cache: {walls[0]:.1f} s ({walls[0] / 60:.2f} min); warm cache: {walls[1]:.1f} s")
    ref, ref2 = tables[0].reference, tables[1].reference
    assert ref is not None and ref2 is not None, "build_table always measures a reference"
    print(f"reference: {ref.model}, level {ref.median_ms:.4f} ms (median of {len(ref.timings_ms)} timings)")
    print(
        f"entry difference between the two builds: median {100 * np.median(rel):.2f} %, "
        f"p90 {100 * np.percentile(rel, 90):.2f} %, max {100 * rel.max():.2f} %"
    )
    print(
        f"the same without one global scale factor ({scale:.4f}): median {100 * np.median(shape):.2f} %, "
        f"p90 {100 * np.percentile(shape, 90):.2f} %"
    )
    print(f"reference level of build 2: {ref2.median_ms:.4f} ms")
    print(f"batches re-measured after throttling/clock changes (build 1 entries): {remeasured}")


if __name__ == "__main__":
    main()
