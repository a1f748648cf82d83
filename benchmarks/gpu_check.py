"""onnxruntime's CUDA and TensorRT execution providers, for real, on this machine's NVIDIA GPU.

For each configuration (CUDA fp32, TensorRT fp32, TensorRT fp16 through ``trt_fp16_enable``):
the session's set-up time (TensorRT builds its engines there, reported apart from inference);
a small latency table (every op of ``--subnets`` random subnets and the smallest and largest at
one resolution, each op timed alone) and how well its op sums predict those subnets measured
whole (share within ±10 %, MAPE; raw, then with the table's calibration fitted on them); and
whole-subnet fidelity against the CPU provider on random inputs (largest |difference|, top-1
agreement). Times are end to end as an application sees them (``session.run`` on host arrays:
the copies to and from the GPU included), median of ``--runs`` after warm-up.

Without an NVIDIA GPU, or with an onnxruntime built without those providers, it prints what is
missing and "skipped" and exits 0. ``--providers CPUExecutionProvider`` runs the same steps on
the CPU (how its test runs it).

    python -m benchmarks.gpu_check [--supernet ID] [--resolution R] [--subnets N] [--runs N]
        [--providers CUDAExecutionProvider,TensorrtExecutionProvider] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ofa_edge.lut.keys import subnet_ops
from ofa_edge.lut.micro import export_micro_models, input_shape
from ofa_edge.lut.table import apply_calibration
from ofa_edge.lut.validate import fidelity, fit_calibration
from ofa_edge.measure.models import export_subnets
from ofa_edge.supernet.family import FamilySpec, at_resolution
from ofa_edge.supernet.registry import get_supernet_info

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def skip_reason(providers: list[str]) -> str | None:
    """Why the check cannot run here (None: it can): no NVIDIA GPU, or providers missing."""
    import onnxruntime as ort

    missing = [p for p in providers if p not in ort.get_available_providers()]
    gpu = (
        shutil.which("nvidia-smi") or Path("/dev/nvidia0").exists() or Path("/etc/nv_tegra_release").exists()
    )
    if any(p in GPU_PROVIDERS for p in providers) and not gpu:
        return "no NVIDIA GPU on this machine (no nvidia-smi, /dev/nvidia0 or /etc/nv_tegra_release)"
    if missing:
        return (
            f"onnxruntime {ort.__version__} here offers {ort.get_available_providers()}, not {missing}: "
            "install onnxruntime-gpu (a Jetson: the Jetson Zoo's wheel)"
        )
    return None


def configurations(providers: list[str], cache: Path) -> list[tuple[str, list[Any]]]:
    """(label, onnxruntime providers list) per configuration; TensorRT falls back to CUDA for the
    nodes it does not take, and caches its engines in ``cache``."""
    configs: list[tuple[str, list[Any]]] = []
    for provider in providers:
        if provider == "TensorrtExecutionProvider":
            for precision in ("fp32", "fp16"):
                options = {
                    "trt_fp16_enable": precision == "fp16",
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(cache / precision),
                }
                configs.append((f"TensorRT {precision}", [(provider, options), "CUDAExecutionProvider"]))
        else:
            configs.append((f"{provider.removesuffix('ExecutionProvider')} fp32", [provider]))
    return configs


def session_runner(path: Path, providers: list[Any]) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    """A function running the model on a batch, and the seconds the session took to set up
    (engine builds included: the first run is part of it)."""
    import onnxruntime as ort

    started = time.perf_counter()
    session = ort.InferenceSession(str(path), providers=providers)
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    run(np.zeros([d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape], np.float32))
    return run, time.perf_counter() - started


def median_ms(run: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...], runs: int) -> float:
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(max(3, runs // 10)):
        run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def check(
    spec: FamilySpec, r: int, n_subnets: int, runs: int, providers: list[str], log: Callable[[str], None]
) -> dict:
    """The whole check (see the module) for ``providers``, as a JSON-able document."""
    space, rng = spec.space, random.Random(0)
    archs = [space.min_arch(r), space.max_arch(r)] + [
        at_resolution(space.sample(rng), r) for _ in range(n_subnets)
    ]
    ops = {op.key: op for arch in archs for op in subnet_ops(spec, arch)}
    op_files = export_micro_models(spec, ops.values())
    doc: dict[str, Any] = {
        "resolution": r,
        "subnets": len(archs),
        "ops": len(ops),
        "runs": runs,
        "results": {},
    }
    with tempfile.TemporaryDirectory(prefix="ofa-edge-gpu-check-") as tmp:
        subnets = export_subnets(spec, archs, Path(tmp))
        x = np.random.default_rng(1).standard_normal((8, 3, r, r)).astype(np.float32)
        cpu = [session_runner(p, ["CPUExecutionProvider"])[0] for p in subnets]
        cpu_out = [np.concatenate([run(s[None]) for s in x]) for run in cpu]
        for label, config in configurations(providers, Path(tmp) / "engines"):
            setup_s, measured, per_op, differences, agree = [], [], {}, [], []
            for key, path in op_files.items():
                run, seconds = session_runner(path, config)
                setup_s.append(seconds)
                per_op[key] = median_ms(run, input_shape(ops[key]), runs)
            for path, reference in zip(subnets, cpu_out):
                run, seconds = session_runner(path, config)
                setup_s.append(seconds)
                measured.append(median_ms(run, (1, 3, r, r), runs))
                out = np.concatenate([run(s[None]) for s in x])
                differences.append(float(np.abs(out - reference).max()))
                agree.append(float(np.mean(out.argmax(1) == reference.argmax(1))))
            sums = np.array([sum(per_op[op.key] for op in subnet_ops(spec, a)) for a in archs])
            n_ops = np.array([len(subnet_ops(spec, a)) for a in archs], dtype=float)
            measured_ms = np.array(measured)
            calibration, _ = fit_calibration(sums, n_ops, measured_ms)
            result = {
                "setup_s_median": statistics.median(setup_s),
                "setup_s_max": max(setup_s),
                "subnet_ms": {"min": float(measured_ms.min()), "max": float(measured_ms.max())},
                "table_raw": fidelity(sums, measured_ms).to_dict(),
                "table_calibrated": fidelity(
                    apply_calibration(calibration, sums, n_ops), measured_ms
                ).to_dict(),
                "calibration": calibration.terms,
                "max_abs_difference_vs_cpu": max(differences),
                "top1_agreement_vs_cpu": float(np.mean(agree)),
            }
            doc["results"][label] = result
            log(f"{label}: {json.dumps(result)}")
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--supernet", default="ofa_mbv3_d234_e346_k357_w1.0")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument(
        "--subnets", type=int, default=10, help="random subnets besides the smallest and largest"
    )
    parser.add_argument("--runs", type=int, default=50, help="timed runs per model")
    parser.add_argument("--providers", default=",".join(GPU_PROVIDERS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    providers = args.providers.split(",")
    reason = skip_reason(providers)
    if reason:
        print(f"gpu_check skipped: {reason}")
        return
    spec = get_supernet_info(args.supernet).spec
    doc = check(spec, args.resolution, args.subnets, args.runs, providers, print)
    if args.json:
        args.json.write_text(json.dumps({"supernet": args.supernet, **doc}, indent=2))


if __name__ == "__main__":
    main()
