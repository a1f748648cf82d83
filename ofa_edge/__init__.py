"""ofa-edge: once-for-all supernets specialized for real device fleets."""

__version__ = "0.1.0"

from ofa_edge.errors import OfaEdgeError
from ofa_edge.supernet import ArchConfig, MobileNetV3, OFAMobileNetV3, SearchSpace
from ofa_edge.supernet.bn import recalibrate_bn
from ofa_edge.supernet.counting import count
from ofa_edge.supernet.registry import list_supernets, load_supernet

__all__ = [
    "ArchConfig",
    "MobileNetV3",
    "OFAMobileNetV3",
    "OfaEdgeError",
    "SearchSpace",
    "__version__",
    "count",
    "list_supernets",
    "load_supernet",
    "recalibrate_bn",
]
