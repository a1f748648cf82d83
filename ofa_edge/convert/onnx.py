"""ONNX export of a static subnet, and the check that onnxruntime computes what torch does."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from device_agents.ofa_edge_agent import predict

OPSET = 18


def export_onnx(model: nn.Module, shape: int | tuple[int, ...], path: str | Path) -> Path:
    """Write ``model`` (eval mode) as an ONNX file with opset 18.

    ``shape`` is the input's full shape, or a resolution meaning a 1x3xRxR image batch.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.zeros((1, 3, shape, shape) if isinstance(shape, int) else shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["logits"],
        )
    return path


def onnx_max_abs_diff(path: str | Path, model: nn.Module, resolution: int, seed: int = 0) -> float:
    """Max |onnxruntime - torch| on one random input: the fp32 export check."""
    x = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    return float(np.abs(run_onnx(path, x.numpy()) - expected).max())


def run_onnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Outputs of an ONNX file in onnxruntime (CPU) on a float batch, one sample per run, computed
    by the device agent's own ``predict`` (so a device's outputs compare with these)."""
    return predict(str(path), "onnxruntime", x, threads=os.cpu_count() or 1)
