"""OFA-MobileNetV3: the weight-sharing supernet and the static subnets extracted from it.

The shared machinery (MIT's API, extraction, strict loading) is ``elastic``'s; this module adds
MobileNetV3's tail (final expand conv, pooling, feature mix after pooling, classifier) and the
layout check that keeps weights of one stride layout out of another.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ofa_edge.errors import CheckpointError
from ofa_edge.supernet.elastic import ElasticSupernet, NetBody, StaticNet
from ofa_edge.supernet.layers import ConvBNAct, LinearLayer
from ofa_edge.supernet.space import OFA_RESOLUTIONS, SearchSpace
from ofa_edge.supernet.spec import MIT_STAGE_STRIDES, MIT_STEM_STRIDE, MBConvSpec, MBv3Spec

__all__ = ["LAYOUT_KEY", "MobileNetV3", "OFAMobileNetV3"]

#: State-dict key of a non-MIT layout's strides, so weights cannot load into another layout
#: (same tensor shapes) unnoticed; MIT's layout has none, so official checkpoints load strictly.
LAYOUT_KEY = "layout_strides"


class _MBv3Tail(NetBody):
    """MobileNetV3's layers after the blocks: expand conv, pooling, then feature mix and classifier."""

    TAIL = ("final_expand_layer", "feature_mix_layer", "classifier")

    def _build_tail(self, spec: MBConvSpec, last_block_width: int, dropout_rate: float) -> None:
        assert isinstance(spec, MBv3Spec)
        self.final_expand_layer = ConvBNAct(last_block_width, spec.final_expand_width, act="h_swish")
        self.feature_mix_layer = ConvBNAct(
            spec.final_expand_width, spec.last_channel, act="h_swish", use_bn=False
        )
        self.classifier = LinearLayer(spec.last_channel, spec.n_classes, dropout_rate)

    def _tail(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_expand_layer(x)
        x = x.mean((2, 3), keepdim=True)
        x = self.feature_mix_layer(x)
        return self.classifier(torch.flatten(x, 1))


class MobileNetV3(_MBv3Tail, StaticNet):
    """A static MobileNetV3 subnet: plain conv/BN layers, no elastic machinery."""


class OFAMobileNetV3(_MBv3Tail, ElasticSupernet):
    """The OFA-MobileNetV3 supernet (elastic kernel, expand ratio, depth; MIT-compatible)."""

    spec: MBv3Spec

    def __init__(
        self,
        n_classes: int = 1000,
        width_mult: float = 1.0,
        ks_list: tuple[int, ...] = (3, 5, 7),
        expand_ratio_list: tuple[float, ...] = (3, 4, 6),
        depth_list: tuple[int, ...] = (2, 3, 4),
        dropout_rate: float = 0.0,
        resolutions: tuple[int, ...] = OFA_RESOLUTIONS,
        bn_param: tuple[float, float] = (0.1, 1e-5),
        stem_stride: int = MIT_STEM_STRIDE,
        stage_strides: tuple[int, ...] = MIT_STAGE_STRIDES,
    ) -> None:
        super().__init__()
        space = SearchSpace(ks_list, expand_ratio_list, depth_list, resolutions)
        spec = MBv3Spec(width_mult, n_classes, space, stem_stride, stage_strides)
        if not spec.is_mit_layout:
            self.register_buffer(LAYOUT_KEY, torch.tensor([stem_stride, *spec.stage_strides]))
        self._build_supernet(spec, dropout_rate, bn_param)

    @classmethod
    def from_spec(cls, spec: MBv3Spec, dropout_rate: float = 0.0) -> OFAMobileNetV3:
        """The (untrained) supernet of ``spec``: its width, classes, space and layout."""
        space = spec.space
        return cls(
            n_classes=spec.n_classes,
            width_mult=spec.width_mult,
            ks_list=space.ks_list,
            expand_ratio_list=space.expand_ratio_list,
            depth_list=space.depth_list,
            dropout_rate=dropout_rate,
            resolutions=space.resolutions,
            stem_stride=spec.stem_stride,
            stage_strides=spec.stage_strides,
        )

    def get_active_subnet(self, preserve_weight: bool = True) -> MobileNetV3:
        """The active subnet as a static ``MobileNetV3`` (weights copied unless told not to)."""
        net = super().get_active_subnet(preserve_weight)
        assert isinstance(net, MobileNetV3)
        return net

    def _check_layout(self, state_dict: Mapping[str, Any]) -> None:
        """Refuse weights trained with other strides: their shapes fit, their features would not."""
        given = state_dict.get(LAYOUT_KEY)
        theirs = _describe_layout(None if given is None else [int(v) for v in given])
        ours = _describe_layout([self.spec.stem_stride, *self.spec.stage_strides])
        if theirs != ours:
            raise CheckpointError(
                f"checkpoint was trained with {theirs}, this supernet has {ours}",
                hint="load it into the supernet it was trained for (--supernet NAME)",
            )


def _describe_layout(strides: list[int] | None) -> str:
    """'stem stride S, stage strides [...]'; None (a checkpoint without the key) is MIT's layout."""
    stem, *stages = strides if strides is not None else [MIT_STEM_STRIDE, *MIT_STAGE_STRIDES]
    return f"stem stride {stem}, stage strides {stages}"
