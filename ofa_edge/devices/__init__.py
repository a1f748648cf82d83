"""Devices: the inventory, the transports that reach them and the agent sessions on them."""
