"""OFA-MobileNetV3's fixed layout, and the concrete blocks a given arch runs.

One description serves the nn.Module builders, the analytic MACs/params counts and (later) the
latency-table enumeration, so they cannot disagree about channel counts or feature-map sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ofa_edge.errors import ConfigError
from ofa_edge.supernet.space import ArchConfig, SearchSpace

CHANNEL_DIVISIBLE = 8
SE_REDUCTION = 4

_BASE_WIDTHS = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
#: MIT's layout: the stem conv's stride and the first-block stride of each elastic stage.
MIT_STEM_STRIDE = 2
MIT_STAGE_STRIDES = (2, 2, 2, 1, 2)
_FIRST_BLOCK_STRIDE = 1
_ACTS = ("relu", "relu", "relu", "h_swish", "h_swish", "h_swish")
_SE = (False, False, True, False, True, True)


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


@dataclass(frozen=True)
class MBv3Spec:
    """Fixed hyperparameters of an OFA-MobileNetV3 supernet of a given width.

    The strides are the layout: MIT's by default; small images (CIFAR) keep larger feature maps
    with stride 1 in the stem and/or early stages, the blocks and LUT keys being otherwise the same.
    """

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
        """JSON-able; the strides only when not MIT's, so MIT's descriptions stay as they were."""
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

    def stem_size(self, r: int) -> int:
        """Side of the stem conv's output (the first block's input) at resolution ``r``."""
        return conv_out_size(r, self.stem_stride)

    def _width(self, base: int) -> int:
        return make_divisible(base * self.width_mult)

    @property
    def first_conv_width(self) -> int:
        return self._width(_BASE_WIDTHS[0])

    @property
    def first_block_width(self) -> int:
        return self._width(_BASE_WIDTHS[1])

    @property
    def stages(self) -> list[StageSpec]:
        return [
            StageSpec(self._width(w), s, a, se)
            for w, s, a, se in zip(_BASE_WIDTHS[2:7], self.stage_strides, _ACTS[1:], _SE[1:])
        ]

    @property
    def final_expand_width(self) -> int:
        return self._width(_BASE_WIDTHS[7])

    @property
    def last_channel(self) -> int:
        return self._width(_BASE_WIDTHS[8])

    def first_block(self, in_size: int) -> BlockSpec:
        c_in, c_out = self.first_conv_width, self.first_block_width
        return BlockSpec(
            in_size,
            c_in,
            make_divisible(round(c_in * 1)),
            c_out,
            3,
            _FIRST_BLOCK_STRIDE,
            _SE[0],
            _ACTS[0],
            c_in == c_out,
            has_expand=False,
        )

    def max_mid(self, cin: int) -> int:
        return mid_channels(cin, max(self.space.expand_ratio_list))

    def blocks(self, arch: ArchConfig) -> list[BlockSpec]:
        """The blocks ``arch`` runs, first block included, with their input sizes."""
        first = self.first_block(self.stem_size(arch.r))
        blocks = [first]
        size, cin = first.out_size, first.cout
        for stage_id, stage in enumerate(self.stages):
            for i in range(arch.d[stage_id]):
                slot = stage_id * self.space.max_depth + i
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
                blocks.append(block)
                size, cin = block.out_size, block.cout
        return blocks


def mid_channels(cin: int, expand_ratio: float) -> int:
    """Hidden width of an inverted-residual block (OFA: make_divisible(round(cin*e), 8))."""
    return make_divisible(round(cin * expand_ratio))
