"""One entry per step for every format and precision: convert a torch module to fp32, then lower
the converted file to fp16 (weights stored as float16) or int8 (static, calibrated)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from torch import nn

from ofa_edge.convert.onnx import export_onnx
from ofa_edge.convert.quantize import onnx_fp16, quantize_onnx
from ofa_edge.convert.tflite import export_tflite, quantize_tflite, tflite_fp16

FORMATS = ("onnx", "tflite")
#: Held while a model is converted or quantized: torch's exporters (and the warnings filters they
#: set) are process-wide state, so threads of a fleet command convert one at a time. Reentrant:
#: callers that also seed torch's global RNG for the module hold it around both.
EXPORT_LOCK = threading.RLock()


def convert(model: nn.Module, shape: int | tuple[int, ...], fmt: str, path: str | Path) -> Path:
    """Write ``model`` as an fp32 ``fmt`` file (ONNX opset 18, or TFLite via litert-torch)."""
    with EXPORT_LOCK:
        return (export_onnx if fmt == "onnx" else export_tflite)(model, shape, path)


def quantize(fp32_path: str | Path, out: str | Path, fmt: str, precision: str, calib: np.ndarray) -> Path:
    """Write the ``precision`` (fp16 or int8) version of an fp32 ``fmt`` file; int8 calibrates
    on ``calib`` (NCHW floats), fp16 needs no data."""
    with EXPORT_LOCK:
        if precision == "fp16":
            return (onnx_fp16 if fmt == "onnx" else tflite_fp16)(fp32_path, out)
        return (quantize_onnx if fmt == "onnx" else quantize_tflite)(fp32_path, out, calib)
