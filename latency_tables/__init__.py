"""The latency tables ofa-edge ships, installed as the package data ``ofa_edge.latency_tables``
(see README.md here; ``ofa_edge.lut.store`` finds them)."""
