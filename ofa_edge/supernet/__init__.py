"""Supernets: the OFA-MobileNetV3 network, its search space, counts and the named registry."""

from ofa_edge.supernet.ofa_mbv3 import MobileNetV3, OFAMobileNetV3
from ofa_edge.supernet.space import ArchConfig, SearchSpace

__all__ = ["ArchConfig", "MobileNetV3", "OFAMobileNetV3", "SearchSpace"]
