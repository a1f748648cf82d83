"""OFA-ProxylessNAS's family: MIT's ``OFAProxylessNASNets`` layout, described without torch.

Five elastic stages (depths from ``depth_list``) and a sixth of exactly one block (its kernel and
expand ratio elastic, its depth fixed at 1: ks/e have 21 entries, d has 6 with d[5] = 1), ReLU6
everywhere, no SE, a first block without shortcut, and a feature-mix conv (BN + ReLU6) *before*
global pooling; BatchNorm eps 1e-3. Latency keys are MIT's legacy ProxylessNAS format
(``mobile_trim.yaml``): ``expand`` is the expand ratio, no ``se``/``hs`` fields, and ``Logits``
covers the pooling and the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ofa_edge.errors import ConfigError
from ofa_edge.supernet.counting import Counts, conv_counts, linear_counts
from ofa_edge.supernet.family import Op, register_family
from ofa_edge.supernet.space import OFA_RESOLUTIONS, SearchSpace
from ofa_edge.supernet.spec import MBConvSpec

if TYPE_CHECKING:
    from torch import nn

    from ofa_edge.supernet.elastic import ElasticSupernet
    from ofa_edge.supernet.spec import BlockSpec

#: Stem, first block, the six stages, the feature mix (MIT's ProxylessNAS widths).
_BASE_WIDTHS = (32, 16, 24, 40, 80, 96, 192, 320, 1280)
_STEM_STRIDE = 2
_STAGE_STRIDES = (2, 2, 2, 1, 2, 1)
_ELASTIC_STAGES = 5


def proxyless_space(
    ks_list: tuple[int, ...] = (3, 5, 7),
    expand_ratio_list: tuple[float, ...] = (3, 4, 6),
    depth_list: tuple[int, ...] = (2, 3, 4),
    resolutions: tuple[int, ...] = OFA_RESOLUTIONS,
) -> SearchSpace:
    """ProxylessNAS's space: five stages of elastic depth, then one stage of depth 1."""
    depths = tuple(sorted(depth_list))
    return SearchSpace(
        ks_list,
        expand_ratio_list,
        depths,
        resolutions,
        _ELASTIC_STAGES + 1,
        (depths,) * _ELASTIC_STAGES + ((1,),),
    )


@register_family
@dataclass(frozen=True)
class ProxylessSpec(MBConvSpec):
    """Fixed hyperparameters of an OFA-ProxylessNAS supernet of a given width."""

    family: ClassVar[str] = "proxyless"
    static_name: ClassVar[str] = "ProxylessNASNets"
    base_widths: ClassVar[tuple[int, ...]] = _BASE_WIDTHS
    stem_act: ClassVar[str] = "relu6"
    first_block_act: ClassVar[str] = "relu6"
    stage_acts: ClassVar[tuple[str, ...]] = ("relu6",) * len(_STAGE_STRIDES)
    stage_se: ClassVar[tuple[bool, ...]] = (False,) * len(_STAGE_STRIDES)
    bn_eps: ClassVar[float] = 1e-3
    first_block_shortcut: ClassVar[bool] = False
    stem_stride: ClassVar[int] = _STEM_STRIDE  # type: ignore[misc]  # fixed here, a field in MBv3
    stage_strides: ClassVar[tuple[int, ...]] = _STAGE_STRIDES  # type: ignore[misc]

    width_mult: float = 1.3
    n_classes: int = 1000
    space: SearchSpace = field(default_factory=proxyless_space)

    def __post_init__(self) -> None:
        if not self.width_mult > 0 or self.n_classes < 1:
            raise ConfigError(
                f"width_mult={self.width_mult!r}, n_classes={self.n_classes!r}: "
                "the width must be above 0 and the classes at least 1"
            )
        expected = proxyless_space(
            self.space.ks_list, self.space.expand_ratio_list, self.space.depth_list, self.space.resolutions
        )
        if self.space != expected:
            raise ConfigError(
                f"a ProxylessNAS space has {expected.n_stages} stages with depths "
                f"{[list(d) for d in expected.depth_lists]}, not {[list(d) for d in self.space.depth_lists]}",
                hint="build it with ofa_edge.supernet.proxyless.proxyless_space",
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "width_mult": self.width_mult,
            "n_classes": self.n_classes,
            "space": self.space.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProxylessSpec:
        return cls(data["width_mult"], data["n_classes"], SearchSpace(**data["space"]))

    @property
    def last_channel(self) -> int:
        return self._width(_BASE_WIDTHS[-1])

    def block_key_fields(self, b: BlockSpec, expand_ratio: float) -> tuple[tuple[str, int], ...]:
        """MIT's legacy key: expand *ratio* (``%d``), kernel, stride, shortcut."""
        return (
            ("expand", int(expand_ratio)),
            ("kernel", b.k),
            ("stride", b.stride),
            ("idskip", int(b.shortcut)),
        )

    def tail_ops(self, size: int, cin: int) -> list[Op]:
        """The feature-mix conv, then pooling + classifier as one ``Logits`` op (MIT's keys)."""
        s, lc = size, self.last_channel
        return [Op("Conv_1", (s, s, cin), (s, s, lc)), Op("Logits", (s, s, lc), (self.n_classes,))]

    def tail_counts(self, op: Op) -> Counts:
        cin, cout = op.input[-1], op.output[-1]
        if op.kind == "Conv_1":
            return conv_counts(cin, cout, 1, op.output[0])
        return linear_counts(cin, cout)

    def tail_module(self, op: Op) -> nn.Module:
        from ofa_edge.supernet.layers import ConvBNAct, PooledClassifier

        cin, cout = op.input[-1], op.output[-1]
        if op.kind == "Conv_1":
            return ConvBNAct(cin, cout, act="relu6")
        return PooledClassifier(cin, cout)

    def build(self, dropout_rate: float = 0.0) -> ElasticSupernet:
        from ofa_edge.supernet.ofa_proxyless import OFAProxylessNASNets

        return OFAProxylessNASNets.from_spec(self, dropout_rate)

    def static_net(self, blocks: list[BlockSpec], dropout_rate: float = 0.0) -> nn.Module:
        from ofa_edge.supernet.ofa_proxyless import ProxylessNASNet

        return ProxylessNASNet(self, blocks, dropout_rate)
