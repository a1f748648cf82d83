#!/usr/bin/env python3
"""A TEST DOUBLE of TFLite's ``benchmark_model``: the real tool's flags and log format, fake timings.

It runs nothing: it checks that ``--graph`` exists, then prints what the chosen release prints
(``--fake_release``, a flag only the double has), following that release's sources:

- ``litert-2.2.0`` (default; LiteRT v2.2.0 ``tflite/tools/benchmark/benchmark_model.cc``,
  ``tflite/tools/logging.h``): ``INFO: `` lines on stdout, each loop's ``count=.. first=..
  curr=.. min=.. max=.. avg=.. std=.. p5=.. median=.. p95=..`` (``StatWithPercentiles``), the
  ``Inference timings in us:`` summary and the memory footprint; the XNNPACK delegate's line
  and errors on stderr.
- ``tf-2.0.0`` (TensorFlow v2.0.0 ``tensorflow/lite/tools/benchmark/benchmark_model.cc``,
  ``.../benchmark/logging.h``): bare lines on stdout, no percentiles, ``Average inference
  timings in us: Warmup: .., Init: .., no stats: ..``; a missing model aborts the tool.

Timings are synthetic and deterministic: ``--fake_latency_us`` (the double's) or one derived
from the model file's size, with a little seeded noise. Stdlib only, so it runs on any device
with a Python. ``install`` writes an executable copy that prints as one release does.

Delegates (``--use_gpu``, ``--use_nnapi``; XNNPACK as before): the graph has ``--fake_nodes``
nodes (the double's), of which the last ``--fake_unsupported`` are ops the accelerator cannot
run, and the delegate lines follow the sources and field logs: the GPU delegate's ``Following
operations are not supported by GPU delegate`` message (``delegates/gpu/common/model_builder``),
the interpreter's ``Replacing N out of M node(s) with delegate (NAME) node, yielding K partitions
for the whole graph.`` (``core/subgraph.cc``; K counts every node subset, the delegated and the
rest, and no line at all when the delegate takes no node; TensorFlow 2.0's Android builds print
``Replacing N node(s) with delegate (NAME) node, yielding K partitions.``), and LiteRT's
``Explicitly applied GPU delegate, and the model graph will be completely|partially executed by
the delegate [w/ N delegate kernels].`` or ``Though GPU delegate is explicitly applied, the
model graph will not be executed by the delegate.`` (``tools/benchmark/benchmark_tflite_model.cc``).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shlex
import sys
import zlib
from pathlib import Path

LITERT = "litert-2.2.0"
TF_2_0 = "tf-2.0.0"
RELEASES = (LITERT, TF_2_0)
ABORT_EXIT = 134  # what a shell reports for a program ended by abort() (SIGABRT)


def _stats_line(samples: list[float], percentiles: bool) -> str:
    """One loop's statistics as the tool's ``Stat``/``StatWithPercentiles`` print them."""
    n = len(samples)
    ints = [int(s) for s in samples]
    if min(ints) == max(ints):
        line = f"count={n} curr={ints[-1]}" + ("(all same)" if n > 1 else "")
    else:
        avg = sum(ints) / n
        std = math.sqrt(max(0.0, sum(s * s for s in ints) / n - avg * avg))
        line = (
            f"count={n} first={ints[0]} curr={ints[-1]} min={min(ints)} max={max(ints)} "
            f"avg={avg:.6g} std={int(std)}"
        )
    if percentiles:  # the element at index n * p / 100 of the sorted values, as the tool picks it
        ordered = sorted(ints)
        line += "".join(
            f" {name}={ordered[n * p // 100]}" for name, p in (("p5", 5), ("median", 50), ("p95", 95))
        )
    return line


def _flag_bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes")


#: Each accelerator delegate's kernel name, as the interpreter's ``Replacing`` line shows it.
_KERNEL_NAMES = {"GPU": "TfLiteGpuDelegateV2", "NNAPI": "TfLiteNnapiDelegate"}


def _delegate_lines(name: str, nodes: int, unsupported: int, old: bool) -> None:
    """What applying the ``name`` delegate prints when it cannot take the last ``unsupported``
    of ``nodes`` nodes: the ``Replacing`` line (stderr, TFLite's logger) and, in LiteRT, the
    tool's verdict on stdout (the module docstring names the sources)."""
    taken = max(0, nodes - unsupported)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if not old:
        log(f"INFO: Created TensorFlow Lite delegate for {name}.")
        print(f"INFO: {name} delegate created.", flush=True)
    if name == "GPU" and taken < nodes and not old:
        log(
            "ERROR: Following operations are not supported by GPU delegate:\n"
            "CUSTOM TFLite_Detection_PostProcess: Operation is not supported.\n"
            f"{taken} operations will run on the GPU, and the remaining {nodes - taken} operations will run "
            "on the CPU."
        )
    subsets = 1 if taken == nodes else 2  # the unsupported nodes are the last ones: one subset more
    kernel = f"with delegate ({_KERNEL_NAMES[name]}) node, yielding {subsets} partitions"
    if taken and old:
        log(f"INFO: Replacing {taken} node(s) {kernel}.")
    elif taken:
        log(f"VERBOSE: Replacing {taken} out of {nodes} node(s) {kernel} for the whole graph.")
    if old:
        return
    applied = f"Explicitly applied {name} delegate, and the model graph will be"
    if taken == nodes:
        verdict = f"{applied} completely executed by the delegate."
    elif taken:
        verdict = f"{applied} partially executed by the delegate w/ 1 delegate kernels."
    else:
        verdict = f"Though {name} delegate is explicitly applied, the model graph will not be executed by"
        verdict += " the delegate."
    print(f"INFO: {verdict}", flush=True)


def install(path: Path, release: str = LITERT, unsupported: int = 0) -> Path:
    """Write at ``path`` an executable that runs this double as ``release`` prints (for a phone
    double whose shell runs this machine's programs), with ``unsupported`` nodes an accelerator
    delegate cannot take."""
    if release not in RELEASES:
        raise ValueError(f"unknown benchmark_model release {release!r}; known: {', '.join(RELEASES)}")
    command = shlex.join(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            f"--fake_release={release}",
            f"--fake_unsupported={unsupported}",
        ]
    )
    path.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
    path.chmod(0o755)
    return path


def main(argv: list[str] | None = None) -> int:
    """Print what ``benchmark_model`` of the chosen release would for these flags."""
    parser = argparse.ArgumentParser(prog="benchmark_model", description=__doc__)
    parser.add_argument("--graph", required=True)
    parser.add_argument("--num_threads", type=int, default=-1)
    parser.add_argument("--num_runs", type=int, default=50)
    parser.add_argument("--warmup_runs", type=int, default=1)
    parser.add_argument("--min_secs", type=float, default=1.0)
    parser.add_argument("--use_xnnpack", default=None)  # tf-2.0.0 has no such flag: ignored
    parser.add_argument("--use_gpu", default="false")
    parser.add_argument("--use_nnapi", default="false")
    parser.add_argument("--gpu_precision_loss_allowed", default="true")
    parser.add_argument("--nnapi_allow_fp16", default="false")
    parser.add_argument("--fake_nodes", type=int, default=8)
    parser.add_argument("--fake_unsupported", type=int, default=0)
    parser.add_argument("--fake_latency_us", type=float, default=None)
    parser.add_argument("--fake_release", choices=RELEASES, default=LITERT)
    args = parser.parse_args(argv)
    old = args.fake_release == TF_2_0
    prefix = "" if old else "INFO: "

    def info(text: str = "") -> None:
        print(f"{prefix}{text}", flush=True)

    def error(text: str) -> None:
        print(f"{'' if old else 'ERROR: '}{text}", file=sys.stderr, flush=True)

    info("STARTING!")
    if not old:
        info("Log parameter values verbosely: [0]")
    info(f"Min num runs: [{args.num_runs}]")
    info(f"Min runs duration (seconds): [{args.min_secs:g}]")
    info(f"Num threads: [{args.num_threads}]")
    info(f"Min warmup runs: [{args.warmup_runs}]")
    info(f"Graph: [{args.graph}]")
    accelerators = [
        name for name, flag in (("GPU", args.use_gpu), ("NNAPI", args.use_nnapi)) if _flag_bool(flag)
    ]
    for name in [] if old else accelerators:
        info(f"Use {'gpu' if name == 'GPU' else name}: [1]")
    if not old and args.use_xnnpack is not None:
        info(f"Use xnnpack: [{int(_flag_bool(args.use_xnnpack))}]")
    if not os.path.isfile(args.graph):
        if old:  # TFLITE_LOG(FATAL): the message, then abort()
            error(f"Failed to mmap model {args.graph}")
            return ABORT_EXIT
        error(f"Could not open '{args.graph}'.")
        error(f"Failed to load model {args.graph}")
        error("Benchmarking failed.")
        return 1
    size = os.path.getsize(args.graph)
    threads = max(1, args.num_threads)
    info(f"Loaded model {args.graph}")
    if old:
        info("resolved reporter")
    elif args.use_xnnpack is None or _flag_bool(args.use_xnnpack):
        print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", file=sys.stderr, flush=True)
    for name in accelerators:
        _delegate_lines(name, args.fake_nodes, args.fake_unsupported, old)
    if not old:
        info(f"The input model file size (MB): {size / 1e6:g}")
    latency = args.fake_latency_us or (500.0 + size / 50.0) / threads**0.8
    rng = random.Random(zlib.crc32(f"{args.graph}:{threads}:{latency}".encode()))
    init_us = 2000.0 + size / 500.0
    info(f"Initialized session in {init_us / 1000:g}ms" + ("" if old else "."))

    def loop(min_runs: int, min_secs: float, first_factor: float) -> list[float]:
        info(
            f"Running benchmark for at least {min_runs} iterations and at least {min_secs:g} seconds "
            "but terminate if exceeding 150 seconds."
        )
        runs = max(min_runs, 1, math.ceil(min_secs * 1e6 / latency))
        samples = [latency * (first_factor if i == 0 else rng.uniform(0.98, 1.02)) for i in range(runs)]
        info(_stats_line(samples, percentiles=not old) + "\n")  # the tool ends this line twice
        return samples

    warmup = loop(args.warmup_runs, 0.5, 1.6)
    measured = loop(args.num_runs, args.min_secs, 1.0)
    warmup_avg = sum(int(s) for s in warmup) / len(warmup)
    measured_avg = sum(int(s) for s in measured) / len(measured)
    if old:
        info(
            f"Average inference timings in us: Warmup: {warmup_avg:.6g}, Init: {int(init_us)}, "
            f"no stats: {measured_avg:.6g}"
        )
        return 0
    info(
        f"Inference timings in us: Init: {int(init_us)}, First inference: {int(warmup[0])}, "
        f"Warmup (avg): {warmup_avg:.6g}, Inference (avg): {measured_avg:.6g}"
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
