"""The embedded default job, runnable offline on the local machine.

Until the device/LUT/search pipeline lands this previews it on real work: random subnets of the
OFA-MBv3 w1.0 space (latency does not depend on weight values, so no download is needed) are
counted analytically, extracted, exported to ONNX, checked against torch in onnxruntime and
timed there on this machine.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from ofa_edge.export.onnx import export_onnx, onnx_max_abs_diff
from ofa_edge.supernet import ArchConfig, OFAMobileNetV3
from ofa_edge.supernet.counting import count

T = TypeVar("T")


@dataclass(frozen=True)
class DemoRow:
    name: str
    arch: ArchConfig
    macs: int
    params: int
    onnx_path: str
    max_abs_diff: float
    median_ms: float


def time_onnx(path: Path, runs: int = 30, warmup: int = 5, threads: int = 1) -> float:
    """Median single-image latency (ms) of an ONNX file in onnxruntime on this machine."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)
    samples = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        session.run(None, {inp.name: x})
        if i >= warmup:
            samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def run_demo(
    out_dir: Path,
    n_random: int = 4,
    resolution: int = 160,
    seed: int = 0,
    progress: Callable[[Iterable[T]], Iterator[T]] = iter,
) -> list[DemoRow]:
    """Smallest, largest and ``n_random`` random subnets: counts, ONNX export, check, latency."""
    torch.manual_seed(seed)
    net = OFAMobileNetV3().eval()
    space = net.space
    rng = random.Random(seed)
    archs = [("min", space.min_arch(resolution)), ("max", space.max_arch(resolution))]
    for i in range(n_random):
        a = space.sample(rng)
        archs.append((f"random{i}", ArchConfig(a.ks, a.e, a.d, resolution)))
    rows = []
    for name, arch in progress(archs):
        net.set_arch(arch)
        subnet = net.get_active_subnet()
        path = export_onnx(subnet, arch.r, out_dir / f"{name}.onnx")
        arch.save(out_dir / f"{name}.arch.json")
        c = count(net.spec, arch)
        rows.append(
            DemoRow(
                name,
                arch,
                c.macs,
                c.params,
                str(path),
                onnx_max_abs_diff(path, subnet, arch.r),
                time_onnx(path),
            )
        )
    return rows
