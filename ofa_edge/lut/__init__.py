"""Latency lookup tables: op enumeration, the JSON format, prediction, MIT's YAML tables, and
where tables are found (the table store)."""

from ofa_edge.lut.keys import Op, enumerate_ops, subnet_ops
from ofa_edge.lut.store import find_table, load_table_for, table_folders
from ofa_edge.lut.table import LatencyTable, LutError, export_ofa, import_ofa

__all__ = [
    "LatencyTable",
    "LutError",
    "Op",
    "enumerate_ops",
    "export_ofa",
    "find_table",
    "import_ofa",
    "load_table_for",
    "subnet_ops",
    "table_folders",
]
