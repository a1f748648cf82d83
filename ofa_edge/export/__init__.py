"""Export of extracted subnets to device formats (ONNX now; TFLite and int8 to come)."""

from ofa_edge.export.onnx import export_onnx, onnx_max_abs_diff

__all__ = ["export_onnx", "onnx_max_abs_diff"]
