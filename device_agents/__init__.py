"""What runs on devices: ``ofa_edge_agent.py`` (stdlib + numpy + the device's runtime).

Installed with ofa-edge as package data so the host can deploy it; never imported on the host.
"""
