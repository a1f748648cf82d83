"""benchmarks/gpu_check.py: skipped plainly without an NVIDIA GPU; its steps run for real on the
CPU provider (the path a GPU run takes, with another provider list)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check import check, configurations, skip_reason
from ofa_edge.supernet.registry import get_supernet_info


def test_says_it_skipped_without_a_gpu_or_providers() -> None:
    reason = skip_reason(["CUDAExecutionProvider", "TensorrtExecutionProvider"])
    if reason is None:
        pytest.skip("an NVIDIA GPU and onnxruntime-gpu are here: run the check itself (minutes)")
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and res.stdout.strip() == f"gpu_check skipped: {reason}"
    assert "NVIDIA GPU" in reason or "onnxruntime-gpu" in reason


def test_tensorrt_runs_fp32_and_fp16_with_cuda_fallback(tmp_path: Path) -> None:
    configs = dict(configurations(["CUDAExecutionProvider", "TensorrtExecutionProvider"], tmp_path))
    assert list(configs) == ["CUDA fp32", "TensorRT fp32", "TensorRT fp16"]
    (_, fp16_options), fallback = configs["TensorRT fp16"]
    assert fp16_options["trt_fp16_enable"] is True and fallback == "CUDAExecutionProvider"


def test_steps_on_the_cpu_provider() -> None:
    spec = get_supernet_info("ofa-mbv3-cifar10").spec
    lines: list[str] = []
    doc = check(spec, 24, 2, 5, ["CPUExecutionProvider"], lines.append)
    (result,) = doc["results"].values()
    assert doc["subnets"] == 4 and doc["ops"] > 4 and len(lines) == 1
    assert result["top1_agreement_vs_cpu"] == 1.0 and result["max_abs_difference_vs_cpu"] < 1e-4
    assert 0 < result["subnet_ms"]["min"] <= result["subnet_ms"]["max"]
    assert 0 <= result["table_raw"]["within_10pct"] <= 1 and result["setup_s_median"] > 0
