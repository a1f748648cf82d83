"""One entry per step for every format: convert a torch module, quantize the converted file."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from torch import nn

from ofa_edge.convert.onnx import export_onnx
from ofa_edge.convert.quantize import quantize_onnx
from ofa_edge.convert.tflite import export_tflite, quantize_tflite

FORMATS = ("onnx", "tflite")
#: Held while a model is converted or quantized: torch's exporters (and the warnings filters they
#: set) are process-wide state, so threads of a fleet command convert one at a time. Reentrant:
#: callers that also seed torch's global RNG for the module hold it around both.
EXPORT_LOCK = threading.RLock()


def convert(model: nn.Module, shape: int | tuple[int, ...], fmt: str, path: str | Path) -> Path:
    """Write ``model`` as an fp32 ``fmt`` file (ONNX opset 18, or TFLite via litert-torch)."""
    with EXPORT_LOCK:
        return (export_onnx if fmt == "onnx" else export_tflite)(model, shape, path)


def quantize(fp32_path: str | Path, out: str | Path, fmt: str, calib: np.ndarray) -> Path:
    """Write the int8 version of an fp32 ``fmt`` file, calibrated on ``calib`` (NCHW floats)."""
    with EXPORT_LOCK:
        return (quantize_onnx if fmt == "onnx" else quantize_tflite)(fp32_path, out, calib)
