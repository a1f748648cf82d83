"""ONNX int8: onnxruntime static quantization (QDQ), calibrated on images; and ONNX fp16.

Per-channel int8 weights and uint8 activations: the combination onnxruntime runs fastest on
x86 and ARM CPUs (signed activations were about 3x slower on x86 here).

The stem (the first conv and block 0, which OFA-MBv3 does not make elastic) stays fp32. Block 0's
depthwise conv has channels with weights up to ~17 (a sharp spatial filter), which amplify the
rounding of its int8 input: quantized, the activation SNR fell from ~38 dB after the first conv to
~18 dB after block 0 and never recovered, and int8 agreed with fp32 on only 87-93 % of images.
Measured on ``ofa-mbv3-cifar10`` (8 random subnets, the largest @40, the smallest @24 and @32;
calibrated on 256 shipped images, validated on the other 744): quantizing everything lost
-0.9 to 3.0 top-1 points (8 of 11 above 1); with the stem in fp32 agreement is 96.8-98.5 % and
the drop -0.8 to 0.8 points. The stem is <1 % of the compute: latency and file size are unchanged
(largest @40: 1.47 ms int8 vs 1.45 ms fp32 and 1.45 ms fully int8, one onnxruntime thread).
Keeping the classifier, the SE branches, the first conv alone, or block 0 alone in fp32 did not
help; per-tensor weights lost 3-8 points. Graphs without these node names (e.g. the latency-table
micro-models) are quantized whole, as before.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnx import GraphProto

#: Node-name prefixes (torch's ONNX export names nodes after modules) of the layers kept in fp32.
FP32_SCOPES = ("/first_conv/", "/blocks.0/")


def fp32_nodes(graph: GraphProto) -> list[str]:
    """Names of the nodes under ``FP32_SCOPES`` in a (pre-processed) ONNX graph, to keep in fp32.

    onnxruntime's pre-processing inlines HardSwish into unnamed HardSigmoid and Mul nodes; those
    fed by a kept node are named here (the graph is modified) so that they can be kept too.
    """
    kept: list[str] = []
    outputs: set[str] = set()
    for i, node in enumerate(graph.node):  # topological order: producers come first
        inlined = not node.name and bool(outputs.intersection(node.input))
        if inlined:
            node.name = f"fp32_inlined_{i}"
        if inlined or node.name.startswith(FP32_SCOPES):
            kept.append(node.name)
            outputs.update(node.output)
    return kept


def quantize_onnx(fp32_path: str | Path, out: str | Path, calib: np.ndarray) -> Path:
    """Write the int8 (QDQ) version of an fp32 ONNX file, calibrated on ``calib`` (N x C x H x W)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, out = Path(fp32_path), Path(out)

    class Reader(CalibrationDataReader):
        """Feeds the calibration images one at a time (the exported models have batch 1)."""

        def __init__(self, input_name: str) -> None:
            self.samples = iter(calib.astype(np.float32))
            self.input_name = input_name

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.samples, None)
            return None if x is None else {self.input_name: x[None]}

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        keep = fp32_nodes(model.graph)
        onnx.save(model, str(prepared))
        quantize_static(
            str(prepared),
            str(out),
            Reader(model.graph.input[0].name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # 7-bit weights: x86 CPUs without VNNI (AVX2, AVX-512F) multiply u8 x s8 pairs into
            # saturating int16 sums; full-range weights then lose accuracy there (onnxruntime's
            # quantization docs), and an exported model must run alike on every device.
            reduce_range=True,
            nodes_to_exclude=keep,
        )
    return out


def onnx_fp16(fp32_path: str | Path, out: str | Path) -> Path:
    """Write the fp16 version of an fp32 ONNX file: weights and compute in float16, input and
    output kept float32 (cast inside the graph), so every caller feeds it as the fp32 model.
    Uses onnxruntime's own converter (``onnxruntime.transformers.float16``)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    onnx.save(model, str(out))
    return Path(out)
