"""TFLite export: fp32 with litert-torch, fp16 weights and full-integer int8 with ai-edge-quantizer,
and a runner.

Layout: a .tflite written here takes and returns **channels-last** tensors. An image model's
input is ``(1, R, R, 3)`` float32 (normalized like ``ofa_edge.data``), its output the logits
``(1, n_classes)``; a 4-D micro-model maps ``(1, H, W, C)`` to ``(1, H', W', C')``. TFLite runs
NHWC inside, so channels-first inputs would add a transpose at each end of every model, which a
latency-table micro-model would then time as if it were part of the op. Int8 models are full
integer: input and output are int8 with the scale/zero-point in the tensor details
(``run_tflite`` applies them), every op inside computes in int8.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from device_agents.ofa_edge_agent import predict
from ofa_edge.errors import ConverterMissing
from ofa_edge.files import write_atomic

#: The fastest reliable install of the converter we measured (pip backtracks for minutes over
#: the ``[tflite]`` extra as one requirement set).
TFLITE_INSTALL = (
    "pip install ai-edge-litert==2.3.0 litert-converter==0.5.0 torchao jax jaxlib scipy absl-py "
    "rich immutabledict packaging && pip install --no-deps litert-torch==0.10.0 ai-edge-quantizer==0.10.0"
)
_DISTRIBUTIONS = {"litert_torch": "litert-torch", "ai_edge_quantizer": "ai-edge-quantizer"}


def require(module: str) -> ModuleType:
    """Import a converter module, or fail in one line with the command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConverterMissing(
            f"TFLite export needs {_DISTRIBUTIONS.get(module, module)}, which is not installed",
            hint=TFLITE_INSTALL,
        ) from None


def converter_versions() -> dict[str, str | None]:
    """Installed versions of the TFLite converter packages (None if absent): part of cache keys."""
    versions: dict[str, str | None] = {}
    for dist in _DISTRIBUTIONS.values():
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide the converters' chatter: Python progress bars and reports, and the C++ INFO log
    lines the MLIR converter writes straight to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], *shape[2:], shape[1]) if len(shape) == 4 else shape


def to_model_layout(x: np.ndarray) -> np.ndarray:
    """A channels-first batch as a .tflite from here takes it (NCHW -> NHWC for 4-D)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


def export_tflite(model: nn.Module, shape: int | tuple[int, ...], path: str | Path) -> Path:
    """Write ``model`` (eval mode, channels-first) as an fp32 .tflite with channels-last I/O.

    ``shape`` is the channels-first input shape, or a resolution meaning a 1x3xRxR image.
    """
    with _quiet():  # its first import logs torchao's missing CUDA kernels
        litert_torch = require("litert_torch")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (1, 3, shape, shape) if isinstance(shape, int) else tuple(shape)
    model = model.eval()
    with torch.no_grad():
        out_ndim = model(torch.zeros(shape)).ndim
    wrapped = litert_torch.to_channel_last_io(
        model, args=[0] if len(shape) == 4 else [], outputs=[0] if out_ndim == 4 else []
    ).eval()
    litert_torch.config.show_progress = False
    with _quiet():
        edge = litert_torch.convert(wrapped, (torch.zeros(_channels_last(shape)),))
        edge.export(str(path))
    return path


def _signature(path: Path) -> tuple[str, str]:
    """(signature name, input name) of a single-input .tflite."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(path)).get_signature_list()
    name = next(iter(signatures))
    return name, signatures[name]["inputs"][0]


def quantize_tflite(fp32_path: str | Path, out: str | Path, calib: np.ndarray) -> Path:
    """Full-integer int8 (weights and activations) of an fp32 .tflite, calibrated on ``calib``.

    ``calib`` is a channels-first float32 batch (N x C x H x W); each sample is fed alone.
    """
    quantizer = require("ai_edge_quantizer.quantizer")
    recipe = require("ai_edge_quantizer.recipe")
    fp32_path, out = Path(fp32_path), Path(out)
    name, input_name = _signature(fp32_path)
    samples = [{input_name: to_model_layout(x[None])} for x in calib.astype(np.float32)]
    with _quiet():
        qz = quantizer.Quantizer(str(fp32_path), recipe.static_wi8_ai8())
        stats = qz.calibrate({name: samples})
        model = qz.quantize(stats, enable_progress_report=False).quantized_model
    write_atomic(out, bytes(model))
    return out


def tflite_fp16(fp32_path: str | Path, out: str | Path) -> Path:
    """Write the fp16 version of an fp32 .tflite: weights stored as float16 and dequantized in the
    graph (TFLite's float16 quantization), which GPU delegates run in half precision and CPUs in
    fp32; input and output stay float32."""
    recipe = require("ai_edge_quantizer.recipe")
    quantizer = require("ai_edge_quantizer.quantizer")
    qtyping = recipe.qtyping
    fp16 = qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT)
    manager = recipe.recipe_manager.RecipeManager()
    manager.add_quantization_config(
        regex=".*",
        operation_name=recipe.TFLOperationName.ALL_SUPPORTED,
        op_config=qtyping.OpQuantizationConfig(
            weight_tensor_config=fp16,
            compute_precision=qtyping.ComputePrecision.FLOAT,
            explicit_dequantize=True,
        ),
        algorithm_key=recipe.AlgorithmName.FLOAT_CASTING,
    )
    with _quiet():
        result = quantizer.Quantizer(str(fp32_path), manager.get_quantization_recipe()).quantize()
    write_atomic(out, bytes(result.quantized_model))
    return Path(out)


def run_tflite(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Outputs of a .tflite on a channels-first float batch, one sample per invoke, dequantized,
    computed by the device agent's own ``predict``. 4-D outputs come back channels-first, so they
    compare directly with torch's."""
    y = predict(str(path), "tflite", to_model_layout(x.astype(np.float32)), threads=os.cpu_count() or 1)
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y
