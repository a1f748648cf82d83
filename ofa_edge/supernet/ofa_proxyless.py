"""OFA-ProxylessNAS: the weight-sharing supernet and its static subnets, under MIT's module names
(``OFAProxylessNASNets.state_dict()`` loads strictly; ``.mobile_inverted_conv.`` keys too)."""

from __future__ import annotations

import torch

from ofa_edge.supernet.elastic import ElasticSupernet, NetBody, StaticNet
from ofa_edge.supernet.layers import ConvBNAct, LinearLayer
from ofa_edge.supernet.proxyless import ProxylessSpec, proxyless_space
from ofa_edge.supernet.space import OFA_RESOLUTIONS
from ofa_edge.supernet.spec import MBConvSpec


class _ProxylessTail(NetBody):
    """ProxylessNAS's layers after the blocks: feature mix (BN + ReLU6), then pooling and classifier."""

    TAIL = ("feature_mix_layer", "classifier")

    def _build_tail(self, spec: MBConvSpec, last_block_width: int, dropout_rate: float) -> None:
        assert isinstance(spec, ProxylessSpec)
        self.feature_mix_layer = ConvBNAct(last_block_width, spec.last_channel, act="relu6")
        self.classifier = LinearLayer(spec.last_channel, spec.n_classes, dropout_rate)

    def _tail(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature_mix_layer(x)
        return self.classifier(x.mean((2, 3)))


class ProxylessNASNet(_ProxylessTail, StaticNet):
    """A static ProxylessNAS subnet: plain conv/BN layers, no elastic machinery."""


class OFAProxylessNASNets(_ProxylessTail, ElasticSupernet):
    """The OFA-ProxylessNAS supernet (elastic kernel, expand ratio, depth; MIT-compatible)."""

    spec: ProxylessSpec

    def __init__(
        self,
        n_classes: int = 1000,
        width_mult: float = 1.3,
        ks_list: tuple[int, ...] = (3, 5, 7),
        expand_ratio_list: tuple[float, ...] = (3, 4, 6),
        depth_list: tuple[int, ...] = (2, 3, 4),
        dropout_rate: float = 0.0,
        resolutions: tuple[int, ...] = OFA_RESOLUTIONS,
        bn_param: tuple[float, float] = (0.1, 1e-3),
    ) -> None:
        super().__init__()
        space = proxyless_space(ks_list, expand_ratio_list, depth_list, resolutions)
        self._build_supernet(ProxylessSpec(width_mult, n_classes, space), dropout_rate, bn_param)

    @classmethod
    def from_spec(cls, spec: ProxylessSpec, dropout_rate: float = 0.0) -> OFAProxylessNASNets:
        """The (untrained) supernet of ``spec``."""
        space = spec.space
        return cls(
            spec.n_classes,
            spec.width_mult,
            space.ks_list,
            space.expand_ratio_list,
            space.depth_list,
            dropout_rate,
            space.resolutions,
        )
