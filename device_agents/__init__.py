"""What runs on devices: ``ofa_edge_agent.py`` (stdlib + numpy + the device's runtime).

Installed with ofa-edge as package data so the host can deploy it. The host imports only its
identification functions (``identify``, ``parse_getprop``), for phones measured without Python.
"""
