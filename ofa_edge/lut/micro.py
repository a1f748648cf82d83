"""Micro-models: each table op as a tiny standalone model file, cached on the host by content.

The op's module is built from the same layer classes the extracted subnets use, so a table
entry times exactly what a whole subnet runs. Files are keyed by (op, format, precision,
exporter versions) so rebuilds and other devices with the same runtime reuse them. Formats:
ONNX and TFLite (channels-last I/O, as whole exported subnets run), each fp32 or int8; int8
micro-models are calibrated on random normal inputs, which is enough for timing
(``ofa_edge.measure.models.export_for_timing`` writes them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from ofa_edge.convert.formats import EXPORT_LOCK, FORMATS
from ofa_edge.convert.onnx import OPSET
from ofa_edge.devices.spec import PRECISIONS
from ofa_edge.errors import ConfigError
from ofa_edge.files import cache_dir
from ofa_edge.lut.keys import Op
from ofa_edge.measure.models import export_for_timing, tool_versions
from ofa_edge.supernet.family import FamilySpec

MICRO_VERSION = 1


def op_module(spec: FamilySpec, op: Op) -> nn.Module:
    """The op as a module taking a (1, C, H, W) input (its family builds it)."""
    return spec.op_module(op)


def input_shape(op: Op) -> tuple[int, int, int, int]:
    h, w, c = op.input
    return (1, c, h, w)


def micro_path(op: Op, fmt: str, precision: str) -> Path:
    """Where ``op``'s model file is cached, keyed by content and the tools that make it."""
    ident = f"{MICRO_VERSION}|{op.key}|{fmt}|{precision}|{torch.__version__}|opset{OPSET}"
    tools = tool_versions(fmt, precision)
    if tools:
        ident += "|" + tools
    digest = hashlib.sha256(ident.encode()).hexdigest()[:20]
    return cache_dir() / "micro" / f"{digest}.{fmt}"


def export_micro_model(spec: FamilySpec, op: Op, fmt: str, precision: str, path: Path) -> Path:
    """Write ``op`` as a standalone model file (atomically: a temp name renamed when complete).

    Weights are drawn with seed 0 for every op, so a file depends only on its cache key (the
    export lock keeps other threads off torch's global RNG meanwhile).
    """
    with EXPORT_LOCK, torch.random.fork_rng():
        torch.manual_seed(0)
        module = op_module(spec, op).eval()
    return export_for_timing(module, input_shape(op), fmt, precision, path)


def export_micro_models(
    spec: FamilySpec,
    ops: Iterable[Op],
    fmt: str = "onnx",
    precision: str = "fp32",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Path]:
    """Model files for ``ops`` (op key -> path), exporting only those not cached yet;
    ``progress(done, total)`` follows the exports (TFLite and int8 take seconds per op)."""
    if fmt not in FORMATS or precision not in PRECISIONS:
        raise ConfigError(
            f"latency tables in {fmt}/{precision} cannot be built",
            hint=f"formats: {', '.join(FORMATS)}; precisions: {', '.join(PRECISIONS)}",
        )
    paths = {}
    todo = []
    for op in ops:
        paths[op.key] = micro_path(op, fmt, precision)
        if not paths[op.key].is_file():
            todo.append(op)
    if todo:
        paths[todo[0].key].parent.mkdir(parents=True, exist_ok=True)
        if progress:
            progress(0, len(todo))
    for done, op in enumerate(todo, 1):
        with EXPORT_LOCK:  # a fleet's other devices may have written it meanwhile: shared, not redone
            if not paths[op.key].is_file():
                export_micro_model(spec, op, fmt, precision, paths[op.key])
        if progress:
            progress(done, len(todo))
    return paths
