"""Latency lookup tables: op enumeration, the JSON format, prediction, MIT's YAML tables."""

from ofa_edge.lut.keys import Op, enumerate_ops, subnet_ops
from ofa_edge.lut.table import LatencyTable, LutError, export_ofa, import_ofa

__all__ = ["LatencyTable", "LutError", "Op", "enumerate_ops", "export_ofa", "import_ofa", "subnet_ops"]
