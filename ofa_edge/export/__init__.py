"""Export of extracted subnets to device formats: ONNX and TFLite, fp32 and int8, each checked."""

from ofa_edge.convert.onnx import export_onnx, onnx_max_abs_diff
from ofa_edge.export.check import ExportCheckError, ExportReport, export_model, export_subnet

__all__ = [
    "ExportCheckError",
    "ExportReport",
    "export_model",
    "export_onnx",
    "export_subnet",
    "onnx_max_abs_diff",
]
