"""Tiny ONNX models built directly with onnx.helper (no export step), for agent tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_model(path: Path, channels: int = 8, size: int = 32) -> Path:
    """Input 1x3xSxS -> 3x3 conv -> ReLU: milliseconds per run."""
    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((channels, 3, 3, 3)).astype(np.float32), "w"
    )
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, size, size])],
        [w],
    )
    return _save(graph, path)


def slow_model(path: Path, n: int = 768, depth: int = 12) -> Path:
    """A chain of n x n matmuls: long enough per run to overrun a short per-model timeout."""
    w = numpy_helper.from_array(np.eye(n, dtype=np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", "w"], [f"h{i + 1}"]) for i in range(depth)
    ]
    nodes.append(helper.make_node("Identity", [f"h{depth}"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
        [w],
    )
    return _save(graph, path)


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
