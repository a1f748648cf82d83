"""Micro-models: every op of a subnet exports, runs in onnxruntime with the table's shapes, and is
cached by content."""

from __future__ import annotations

import itertools

import numpy as np
import onnxruntime as ort

from ofa_edge.lut.keys import subnet_ops
from ofa_edge.lut.micro import export_micro_models, input_shape
from ofa_edge.supernet.spec import MBv3Spec


def test_subnet_ops_export_and_chain() -> None:
    spec = MBv3Spec(width_mult=0.5, n_classes=10)
    arch = spec.space.min_arch(128)
    ops = subnet_ops(spec, arch)
    paths = export_micro_models(spec, ops)
    mtimes = {k: p.stat().st_mtime_ns for k, p in paths.items()}
    for prev, op in itertools.pairwise(ops):
        assert prev.output == op.input[: len(prev.output)], (prev.key, op.key)
    for op in ops:
        session = ort.InferenceSession(str(paths[op.key]), providers=["CPUExecutionProvider"])
        x = np.zeros(input_shape(op), np.float32)
        (y,) = session.run(None, {session.get_inputs()[0].name: x})
        expected = (1, op.output[-1], *op.output[:-1]) if len(op.output) == 3 else (1, *op.output)
        assert y.shape == expected, op.key
    seen: list[tuple[int, int]] = []
    again = export_micro_models(spec, ops, progress=lambda done, total: seen.append((done, total)))
    assert {k: p.stat().st_mtime_ns for k, p in again.items()} == mtimes, "cached, not re-exported"
    assert seen == [], "nothing exported, nothing reported"
    for op in ops[:2]:
        paths[op.key].unlink()
    export_micro_models(spec, ops, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 2), (1, 2), (2, 2)] and all(p.is_file() for p in paths.values())
