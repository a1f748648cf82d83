"""ofa-edge: once-for-all supernets specialized for real device fleets.

The public names below load on first use, so commands that only talk to devices do not pay
for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "ArchConfig": "ofa_edge.supernet.space",
    "SearchSpace": "ofa_edge.supernet.space",
    "MobileNetV3": "ofa_edge.supernet.ofa_mbv3",
    "OFAMobileNetV3": "ofa_edge.supernet.ofa_mbv3",
    "OFAProxylessNASNets": "ofa_edge.supernet.ofa_proxyless",
    "OfaEdgeError": "ofa_edge.errors",
    "count": "ofa_edge.supernet.counting",
    "list_supernets": "ofa_edge.supernet.registry",
    "load_supernet": "ofa_edge.supernet.registry",
    "list_specialized": "ofa_edge.supernet.specialized",
    "load_specialized": "ofa_edge.supernet.specialized",
    "recalibrate_bn": "ofa_edge.supernet.bn",
    "AgentSession": "ofa_edge.devices.agent",
    "load_inventory": "ofa_edge.devices.inventory",
    "LatencyTable": "ofa_edge.lut.table",
}

__all__ = [*sorted(_PUBLIC), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'ofa_edge' has no attribute {name!r}")
