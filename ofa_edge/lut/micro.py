"""Micro-models: each table op as a tiny standalone model file, cached on the host by content.

The op's module is built from the same layer classes the extracted subnets use, so a table
entry times exactly what a whole subnet runs. Files are keyed by (op, format, precision,
exporter versions) so rebuilds and other devices with the same runtime reuse them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from ofa_edge.export.onnx import OPSET, export_onnx
from ofa_edge.lut.keys import Op
from ofa_edge.supernet.layers import ConvBNAct, LinearLayer, MBConv, ResidualBlock
from ofa_edge.supernet.registry import cache_dir
from ofa_edge.supernet.spec import MBv3Spec

T = TypeVar("T")
MICRO_VERSION = 1


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


class Classifier(nn.Module):
    """Flatten + linear: the ``Logits`` op as the subnets run it."""

    def __init__(self, cin: int, n_classes: int) -> None:
        super().__init__()
        self.classifier = LinearLayer(cin, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(x, 1))


def op_module(spec: MBv3Spec, op: Op) -> nn.Module:
    """The op as a module taking a (1, C, H, W) input."""
    cin, cout = op.input[-1], op.output[-1]
    if op.kind == "Conv":
        return ConvBNAct(3, cout, 3, 2, act="h_swish")
    if op.kind == "expanded_conv":
        assert op.block is not None
        return ResidualBlock(MBConv(op.block), op.block.shortcut)
    if op.kind == "Conv_1":
        return ConvBNAct(cin, cout, act="h_swish")
    if op.kind == "AvgPool2D":
        return GlobalAvgPool()
    if op.kind == "Conv_2":
        return ConvBNAct(cin, cout, act="h_swish", use_bn=False)
    if op.kind == "Logits":
        return Classifier(cin, spec.n_classes)
    raise ValueError(f"unknown op kind {op.kind!r}")


def input_shape(op: Op) -> tuple[int, int, int, int]:
    h, w, c = op.input
    return (1, c, h, w)


def micro_path(op: Op, fmt: str, precision: str) -> Path:
    ident = f"{MICRO_VERSION}|{op.key}|{fmt}|{precision}|{torch.__version__}|opset{OPSET}"
    digest = hashlib.sha256(ident.encode()).hexdigest()[:20]
    return cache_dir() / "micro" / f"{digest}.{'onnx' if fmt == 'onnx' else 'tflite'}"


def export_micro_models(
    spec: MBv3Spec,
    ops: Iterable[Op],
    fmt: str = "onnx",
    precision: str = "fp32",
    progress: Callable[[Iterable[T]], Iterator[T]] = iter,
) -> dict[str, Path]:
    """Model files for ``ops`` (op key -> path), exporting only those not cached yet."""
    if fmt != "onnx" or precision != "fp32":
        from ofa_edge.errors import ConfigError

        raise ConfigError(
            f"latency tables in {fmt}/{precision} cannot be built yet",
            hint="use an onnxruntime device and --precision fp32 for now",
        )
    paths = {}
    todo = []
    for op in ops:
        paths[op.key] = micro_path(op, fmt, precision)
        if not paths[op.key].is_file():
            todo.append(op)
    torch.manual_seed(0)
    for op in progress(todo):
        module = op_module(spec, op).eval()
        path = paths[op.key]
        tmp = path.with_name(path.stem + ".tmp" + path.suffix)
        export_onnx(module, input_shape(op), tmp)
        tmp.replace(path)
    return paths
