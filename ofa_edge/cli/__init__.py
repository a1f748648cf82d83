"""The ``ofa-edge`` command line: a thin layer over the Python API."""
