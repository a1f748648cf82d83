"""Export of extracted subnets to device formats: ONNX and TFLite, fp32 and int8, each checked."""

from ofa_edge.export.check import ExportCheckError, ExportReport, export_model, export_subnet
from ofa_edge.export.onnx import export_onnx, onnx_max_abs_diff

__all__ = [
    "ExportCheckError",
    "ExportReport",
    "export_model",
    "export_onnx",
    "export_subnet",
    "onnx_max_abs_diff",
]
