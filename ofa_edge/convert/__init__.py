"""Model files for a device runtime: a torch module converted to ONNX or TFLite, fp32 or int8.

Shared by the stages that write model files: ``lut`` (op micro-models), ``measure`` (whole
subnets and the reference model timed on a device) and ``export`` (the checked subnet export).
"""

from ofa_edge.convert.formats import FORMATS, convert, quantize

__all__ = ["FORMATS", "convert", "quantize"]
