"""Supernets: the families (OFA-MobileNetV3, OFA-ProxylessNAS), their search spaces, counts and the
named registry.

Names load on first use: the search space and arch configs need no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "ArchConfig": "ofa_edge.supernet.space",
    "SearchSpace": "ofa_edge.supernet.space",
    "MobileNetV3": "ofa_edge.supernet.ofa_mbv3",
    "OFAMobileNetV3": "ofa_edge.supernet.ofa_mbv3",
    "OFAProxylessNASNets": "ofa_edge.supernet.ofa_proxyless",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'ofa_edge.supernet' has no attribute {name!r}")
