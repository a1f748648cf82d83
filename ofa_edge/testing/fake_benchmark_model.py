#!/usr/bin/env python3
"""A TEST DOUBLE of TFLite's ``benchmark_model``: the real tool's flags and log format, fake timings.

It runs nothing: it checks that ``--graph`` exists, then prints (to stderr, like the real tool's
logger) the ``INFO:`` lines of a recent build: parameters, the warm-up and measured loops'
``count=... first=... avg=... std=... p5=... median=... p95=...`` statistics, the ``Inference
timings in us:`` summary and the memory footprint. Timings are synthetic and deterministic:
``--fake_latency_us`` (a flag only the double has) or one derived from the model file's size,
with a little seeded noise. Stdlib only, so it runs on any device with a Python.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import zlib


def _stats_line(samples: list[float], percentiles: bool) -> str:
    """``count=.. first=.. curr=.. min=.. max=.. avg=.. std=..`` as the tool's Stat prints it."""
    n = len(samples)
    avg = sum(samples) / n
    if n == 1:
        return f"count=1 curr={int(samples[0])}"
    std = math.sqrt(max(0.0, sum(s * s for s in samples) / n - avg * avg))
    line = (
        f"count={n} first={int(samples[0])} curr={int(samples[-1])} min={int(min(samples))} "
        f"max={int(max(samples))} avg={avg:.6g} std={int(std)}"
    )
    if percentiles:
        ordered = sorted(samples)
        pick = {
            name: ordered[min(n - 1, int(q * n))]
            for name, q in (("p5", 0.05), ("median", 0.5), ("p95", 0.95))
        }
        line += "".join(f" {name}={int(value)}" for name, value in pick.items())
    return line


def _flag_bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes")


def main(argv: list[str] | None = None) -> int:
    """Print what ``benchmark_model`` would for these flags; exit 1 if the graph is missing."""
    parser = argparse.ArgumentParser(prog="benchmark_model", description=__doc__)
    parser.add_argument("--graph", required=True)
    parser.add_argument("--num_threads", type=int, default=-1)
    parser.add_argument("--num_runs", type=int, default=50)
    parser.add_argument("--warmup_runs", type=int, default=1)
    parser.add_argument("--min_secs", type=float, default=1.0)
    parser.add_argument("--use_xnnpack", default="true")
    parser.add_argument("--fake_latency_us", type=float, default=None)
    args = parser.parse_args(argv)
    log = sys.stderr

    def info(text: str) -> None:
        print(f"INFO: {text}", file=log)

    info("STARTING!")
    info("Log parameter values verbosely: [0]")
    info(f"Min num runs: [{args.num_runs}]")
    info(f"Min runs duration (seconds): [{args.min_secs:g}]")
    info(f"Num threads: [{args.num_threads}]")
    info(f"Min warmup runs: [{args.warmup_runs}]")
    info(f"Graph: [{args.graph}]")
    info(f"Use xnnpack: [{int(_flag_bool(args.use_xnnpack))}]")
    if not os.path.isfile(args.graph):
        print(f"ERROR: Could not open '{args.graph}'.", file=log)
        print(f"ERROR: Failed to mmap model {args.graph}", file=log)
        print("ERROR: Benchmarking failed.", file=log)
        return 1
    size = os.path.getsize(args.graph)
    threads = max(1, args.num_threads)
    info(f"#threads used for CPU inference: [{threads}]")
    info(f"Loaded model {args.graph}")
    if _flag_bool(args.use_xnnpack):
        info("Created TensorFlow Lite XNNPACK delegate for CPU.")
    info(f"The input model file size (MB): {size / 1e6:g}")
    latency = args.fake_latency_us or (500.0 + size / 50.0) / threads**0.8
    rng = random.Random(zlib.crc32(f"{args.graph}:{threads}:{latency}".encode()))
    init_us = 2000.0 + size / 500.0
    info(f"Initialized session in {init_us / 1000:g}ms.")

    def loop(min_runs: int, min_secs: float, first_factor: float) -> list[float]:
        runs = max(min_runs, 1, math.ceil(min_secs * 1e6 / latency))
        return [latency * (first_factor if i == 0 else rng.uniform(0.98, 1.02)) for i in range(runs)]

    header = (
        "Running benchmark for at least {} iterations and at least {:g} seconds "
        "but terminate if exceeding 150 seconds."
    )
    info(header.format(args.warmup_runs, 0.5))
    warmup = loop(args.warmup_runs, 0.5, 1.6)
    info(_stats_line(warmup, percentiles=False))
    print(file=log)
    info(header.format(args.num_runs, args.min_secs))
    measured = loop(args.num_runs, args.min_secs, 1.0)
    info(_stats_line(measured, percentiles=True))
    print(file=log)
    warmup_avg = sum(warmup) / len(warmup)
    info(
        f"Inference timings in us: Init: {int(init_us)}, First inference: {int(warmup[0])}, "
        f"Warmup (avg): {warmup_avg:.6g}, Inference (avg): {sum(measured) / len(measured):.6g}"
    )
    info(
        "Note: as the benchmark tool itself affects memory footprint, the following is only "
        "APPROXIMATE to the actual memory footprint of the model at runtime. Take the information "
        "at your discretion."
    )
    info(
        "Memory footprint delta from the start of the tool (MB): "
        f"init={size / 1e6 + 3.2:g} overall={size / 5e5 + 8:g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
