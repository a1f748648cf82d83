"""One entry per step for every format: convert a torch module, quantize the converted file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from ofa_edge.convert.onnx import export_onnx
from ofa_edge.convert.quantize import quantize_onnx
from ofa_edge.convert.tflite import export_tflite, quantize_tflite

FORMATS = ("onnx", "tflite")


def convert(model: nn.Module, shape: int | tuple[int, ...], fmt: str, path: str | Path) -> Path:
    """Write ``model`` as an fp32 ``fmt`` file (ONNX opset 18, or TFLite via litert-torch)."""
    if fmt == "onnx":
        return export_onnx(model, shape, path)
    return export_tflite(model, shape, path)


def quantize(fp32_path: str | Path, out: str | Path, fmt: str, calib: np.ndarray) -> Path:
    """Write the int8 version of an fp32 ``fmt`` file, calibrated on ``calib`` (NCHW floats)."""
    if fmt == "onnx":
        return quantize_onnx(fp32_path, out, calib)
    return quantize_tflite(fp32_path, out, calib)
