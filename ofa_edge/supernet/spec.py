"""Supernets of MBConv stages (OFA-MobileNetV3's family here, ProxylessNAS's in ``proxyless``):
their fixed layout, and the concrete blocks and ops a given arch runs.

One description serves the nn.Module builders, the analytic MACs/params counts and the
latency-table enumeration, so they cannot disagree about channel counts or feature-map sizes.
Specs stay free of torch: the modules they build are imported when built.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ofa_edge.errors import ConfigError
from ofa_edge.supernet.counting import Counts, block_counts, conv_counts, linear_counts
from ofa_edge.supernet.family import FamilySpec, Op, register_family
from ofa_edge.supernet.space import ArchConfig, SearchSpace

if TYPE_CHECKING:
    from torch import nn

    from ofa_edge.supernet.elastic import ElasticSupernet

CHANNEL_DIVISIBLE = 8
SE_REDUCTION = 4

_BASE_WIDTHS = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
#: MIT's layout: the stem conv's stride and the first-block stride of each elastic stage.
MIT_STEM_STRIDE = 2
MIT_STAGE_STRIDES = (2, 2, 2, 1, 2)
_FIRST_BLOCK_STRIDE = 1
_ACTS = ("relu", "relu", "relu", "h_swish", "h_swish", "h_swish")
_SE = (False, False, True, False, True, True)
BN_MOMENTUM = 0.1


def make_divisible(v: float, divisor: int = CHANNEL_DIVISIBLE, min_val: int | None = None) -> int:
    """Round ``v`` to a multiple of ``divisor``, never more than 10 % below it (TF/OFA rule)."""
    min_val = divisor if min_val is None else min_val
    new_v = max(min_val, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_out_size(size: int, stride: int) -> int:
    """Output side of a 'same'-padded odd-kernel conv."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class StageSpec:
    width: int
    stride: int
    act: str
    se: bool


@dataclass(frozen=True)
class BlockSpec:
    """A concrete inverted-residual block: what the static subnet builds and the LUT keys."""

    in_size: int
    cin: int
    mid: int
    cout: int
    k: int
    stride: int
    se: bool
    act: str
    shortcut: bool
    #: False for the fixed first block (expand ratio 1): no 1x1 expansion conv.
    has_expand: bool = True

    @property
    def out_size(self) -> int:
        return conv_out_size(self.in_size, self.stride)

    @property
    def se_mid(self) -> int:
        return make_divisible(self.mid // SE_REDUCTION)


class MBConvSpec(FamilySpec):
    """What supernets of MBConv stages share: a 3x3 stem conv, a fixed first block (expand 1,
    kernel 3), then stages of elastic blocks, each stage's first block strided.

    A family sets its base widths (stem, first block, stages..., head), activations, SE and BN
    eps, and its head ops (``tail_ops``) with their modules, counts and peaks.
    """

    base_widths: ClassVar[tuple[int, ...]]
    stem_act: ClassVar[str]
    first_block_act: ClassVar[str]
    stage_acts: ClassVar[tuple[str, ...]]
    stage_se: ClassVar[tuple[bool, ...]]
    bn_eps: ClassVar[float]
    #: Whether the first block adds its input when its widths allow (MIT: MBv3 does, ProxylessNAS not).
    first_block_shortcut: ClassVar[bool]
    space: SearchSpace
    width_mult: float
    stem_stride: int
    stage_strides: tuple[int, ...]

    @abc.abstractmethod
    def static_net(self, blocks: list[BlockSpec], dropout_rate: float = 0.0) -> nn.Module:
        """An (untrained) static subnet running ``blocks``."""

    def arch_from_dict(self, data: Any, *, default_r: int | None = None) -> ArchConfig:
        return ArchConfig.from_dict(data, default_r=default_r)

    def distinct_ops(self, r: int) -> list[Op]:
        """Every (slot, kernel, expand) shape: running every slot at a uniform (kernel, expand)
        covers them, since a slot's shapes depend on nothing else in these spaces."""
        space = self.space
        space.check_resolution(r)
        return [
            op
            for k in space.ks_list
            for e in space.expand_ratio_list
            for op in self.ops(space.uniform_arch(k, e, r))
        ]

    @property
    def bn_param(self) -> tuple[float, float]:
        """(momentum, eps) of every BatchNorm of this family's nets."""
        return BN_MOMENTUM, self.bn_eps

    def stem_size(self, r: int) -> int:
        """Side of the stem conv's output (the first block's input) at resolution ``r``."""
        return conv_out_size(r, self.stem_stride)

    def _width(self, base: int) -> int:
        return make_divisible(base * self.width_mult)

    @property
    def first_conv_width(self) -> int:
        return self._width(self.base_widths[0])

    @property
    def first_block_width(self) -> int:
        return self._width(self.base_widths[1])

    @property
    def stages(self) -> list[StageSpec]:
        widths = self.base_widths[2 : 2 + self.space.n_stages]
        return [
            StageSpec(self._width(w), s, a, se)
            for w, s, a, se in zip(widths, self.stage_strides, self.stage_acts, self.stage_se)
        ]

    def first_block(self, in_size: int) -> BlockSpec:
        c_in, c_out = self.first_conv_width, self.first_block_width
        return BlockSpec(
            in_size,
            c_in,
            make_divisible(round(c_in * 1)),
            c_out,
            3,
            _FIRST_BLOCK_STRIDE,
            False,
            self.first_block_act,
            self.first_block_shortcut and c_in == c_out,
            has_expand=False,
        )

    def _slot_blocks(self, arch: ArchConfig) -> list[tuple[int | None, float, BlockSpec]]:
        """(slot, expand ratio, block) of each block ``arch`` runs; the first block has no slot."""
        first = self.first_block(self.stem_size(arch.r))
        blocks: list[tuple[int | None, float, BlockSpec]] = [(None, 1, first)]
        size, cin = first.out_size, first.cout
        for stage_id, stage in enumerate(self.stages):
            for i, slot in enumerate(self.space.stage_slots(stage_id)[: arch.d[stage_id]]):
                stride = stage.stride if i == 0 else 1
                block = BlockSpec(
                    size,
                    cin,
                    mid_channels(cin, arch.e[slot]),
                    stage.width,
                    arch.ks[slot],
                    stride,
                    stage.se,
                    stage.act,
                    stride == 1 and cin == stage.width,
                )
                blocks.append((slot, arch.e[slot], block))
                size, cin = block.out_size, block.cout
        return blocks

    def blocks(self, arch: ArchConfig) -> list[BlockSpec]:
        """The blocks ``arch`` runs, first block included, with their input sizes."""
        return [block for _, _, block in self._slot_blocks(arch)]

    def ops(self, arch: ArchConfig) -> list[Op]:
        r, size = arch.r, self.stem_size(arch.r)
        ops = [Op("Conv", (r, r, 3), (size, size, self.first_conv_width))]
        blocks = self._slot_blocks(arch)
        for slot, e, b in blocks:
            shapes = ((b.in_size, b.in_size, b.cin), (b.out_size, b.out_size, b.cout))
            ops.append(Op("expanded_conv", *shapes, self.block_key_fields(b, e), b, slot))
        last = blocks[-1][2]
        return ops + self.tail_ops(last.out_size, last.cout)

    @abc.abstractmethod
    def block_key_fields(self, b: BlockSpec, expand_ratio: float) -> tuple[tuple[str, int], ...]:
        """The key fields of an ``expanded_conv`` op after its shapes."""

    @abc.abstractmethod
    def tail_ops(self, size: int, cin: int) -> list[Op]:
        """The ops after the last block, whose output is ``size`` square with ``cin`` channels."""

    def op_counts(self, op: Op) -> Counts:
        if op.block is not None:
            return block_counts(op.block)
        cin, cout = op.input[-1], op.output[-1]
        if op.kind == "Conv":
            return conv_counts(cin, cout, 3, op.output[0])
        return self.tail_counts(op)

    def op_peak(self, op: Op) -> int:
        if op.block is not None:
            return block_peak(op.block)
        return _elements(op.input) + _elements(op.output)

    @abc.abstractmethod
    def tail_counts(self, op: Op) -> Counts:
        """MACs and params of one of ``tail_ops``."""

    def op_module(self, op: Op) -> nn.Module:
        from ofa_edge.supernet.layers import ConvBNAct, MBConv, ResidualBlock

        if op.block is not None:
            return ResidualBlock(MBConv(op.block), op.block.shortcut)
        if op.kind == "Conv":
            return ConvBNAct(3, op.output[-1], 3, self.stem_stride, act=self.stem_act)
        return self.tail_module(op)

    @abc.abstractmethod
    def tail_module(self, op: Op) -> nn.Module:
        """The module of one of ``tail_ops``."""


def _elements(shape: tuple[int, ...]) -> int:
    n = 1
    for side in shape:
        n *= side
    return n


def block_peak(b: BlockSpec) -> int:
    """Peak live activation elements inside one inverted-residual block: the largest of each
    layer's input plus output, plus the block input kept for the residual add."""
    hw_in, hw_out = b.in_size**2, b.out_size**2
    keep = b.cin * hw_in if b.shortcut else 0
    layers = [b.mid * hw_in + b.mid * hw_out + keep, b.mid * hw_out + b.cout * hw_out + keep]
    if b.has_expand:
        layers.append(b.cin * hw_in + b.mid * hw_in)
    return max(layers)


@register_family
@dataclass(frozen=True)
class MBv3Spec(MBConvSpec):
    """Fixed hyperparameters of an OFA-MobileNetV3 supernet of a given width.

    The strides are the layout: MIT's by default; small images (CIFAR) keep larger feature maps
    with stride 1 in the stem and/or early stages, the blocks and LUT keys being otherwise the same.
    """

    family: ClassVar[str] = "mbv3"
    static_name: ClassVar[str] = "MobileNetV3"
    base_widths: ClassVar[tuple[int, ...]] = _BASE_WIDTHS
    stem_act: ClassVar[str] = "h_swish"
    first_block_act: ClassVar[str] = _ACTS[0]
    stage_acts: ClassVar[tuple[str, ...]] = _ACTS[1:]
    stage_se: ClassVar[tuple[bool, ...]] = _SE[1:]
    bn_eps: ClassVar[float] = 1e-5
    first_block_shortcut: ClassVar[bool] = True

    width_mult: float = 1.0
    n_classes: int = 1000
    space: SearchSpace = field(default_factory=SearchSpace)
    stem_stride: int = MIT_STEM_STRIDE
    stage_strides: tuple[int, ...] = MIT_STAGE_STRIDES

    def __post_init__(self) -> None:
        strides = tuple(self.stage_strides)
        object.__setattr__(self, "stage_strides", strides)
        if not self.width_mult > 0 or self.n_classes < 1:
            raise ConfigError(
                f"width_mult={self.width_mult!r}, n_classes={self.n_classes!r}: "
                "the width must be above 0 and the classes at least 1"
            )
        if self.stem_stride not in (1, 2):
            raise ConfigError(f"stem_stride={self.stem_stride!r} is not 1 or 2")
        if len(strides) != self.space.n_stages or any(s not in (1, 2) for s in strides):
            raise ConfigError(
                f"stage_strides={list(strides)}: expected {self.space.n_stages} strides, each 1 or 2"
            )

    @property
    def is_mit_layout(self) -> bool:
        return self.stem_stride == MIT_STEM_STRIDE and self.stage_strides == MIT_STAGE_STRIDES

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; the strides only when not MIT's, so MIT's descriptions stay as they were
        (and no ``family``: MBv3 is the default family, so files written before families stay)."""
        data: dict[str, Any] = {
            "width_mult": self.width_mult,
            "n_classes": self.n_classes,
            "space": self.space.to_dict(),
        }
        if not self.is_mit_layout:
            data.update(stem_stride=self.stem_stride, stage_strides=list(self.stage_strides))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MBv3Spec:
        """A spec from ``to_dict`` output (or a supernet description); no strides: MIT's."""
        return cls(
            data["width_mult"],
            data["n_classes"],
            SearchSpace(**data["space"]),
            data.get("stem_stride", MIT_STEM_STRIDE),
            tuple(data.get("stage_strides", MIT_STAGE_STRIDES)),
        )

    @property
    def final_expand_width(self) -> int:
        return self._width(_BASE_WIDTHS[7])

    @property
    def last_channel(self) -> int:
        return self._width(_BASE_WIDTHS[8])

    def block_key_fields(self, b: BlockSpec, expand_ratio: float) -> tuple[tuple[str, int], ...]:
        """MIT's MBv3 key: hidden width, kernel, stride, shortcut, SE, h-swish."""
        return (
            ("expand", b.mid),
            ("kernel", b.k),
            ("stride", b.stride),
            ("idskip", int(b.shortcut)),
            ("se", int(b.se)),
            ("hs", int(b.act == "h_swish")),
        )

    def tail_ops(self, size: int, cin: int) -> list[Op]:
        """Final expand conv, global pooling, feature mix (after pooling) and the classifier."""
        s, fe, lc = size, self.final_expand_width, self.last_channel
        return [
            Op("Conv_1", (s, s, cin), (s, s, fe)),
            Op("AvgPool2D", (s, s, fe), (1, 1, fe)),
            Op("Conv_2", (1, 1, fe), (1, 1, lc)),
            Op("Logits", (1, 1, lc), (self.n_classes,)),
        ]

    def tail_counts(self, op: Op) -> Counts:
        cin, cout = op.input[-1], op.output[-1]
        kinds: dict[str, Callable[[], Counts]] = {
            "Conv_1": lambda: conv_counts(cin, cout, 1, op.output[0]),
            "AvgPool2D": lambda: Counts(0, 0),
            "Conv_2": lambda: conv_counts(cin, cout, 1, 1, bn=False),
            "Logits": lambda: linear_counts(cin, cout),
        }
        return kinds[op.kind]()

    def tail_module(self, op: Op) -> nn.Module:
        from ofa_edge.supernet.layers import Classifier, ConvBNAct, GlobalAvgPool

        cin, cout = op.input[-1], op.output[-1]
        kinds: dict[str, Callable[[], nn.Module]] = {
            "Conv_1": lambda: ConvBNAct(cin, cout, act="h_swish"),
            "AvgPool2D": GlobalAvgPool,
            "Conv_2": lambda: ConvBNAct(cin, cout, act="h_swish", use_bn=False),
            "Logits": lambda: Classifier(cin, self.n_classes),
        }
        return kinds[op.kind]()

    def build(self, dropout_rate: float = 0.0) -> ElasticSupernet:
        from ofa_edge.supernet.ofa_mbv3 import OFAMobileNetV3

        return OFAMobileNetV3.from_spec(self, dropout_rate)

    def static_net(self, blocks: list[BlockSpec], dropout_rate: float = 0.0) -> nn.Module:
        from ofa_edge.supernet.ofa_mbv3 import MobileNetV3

        return MobileNetV3(self, blocks, dropout_rate)


def mid_channels(cin: int, expand_ratio: float) -> int:
    """Hidden width of an inverted-residual block (OFA: make_divisible(round(cin*e), 8))."""
    return make_divisible(round(cin * expand_ratio))
