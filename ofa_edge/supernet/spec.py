"""OFA-MobileNetV3's fixed layout, and the concrete blocks a given arch runs.

One description serves the nn.Module builders, the analytic MACs/params counts and (later) the
latency-table enumeration, so they cannot disagree about channel counts or feature-map sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ofa_edge.supernet.space import ArchConfig, SearchSpace

CHANNEL_DIVISIBLE = 8
SE_REDUCTION = 4

_BASE_WIDTHS = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
_STRIDES = (1, 2, 2, 2, 1, 2)
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
    """Fixed hyperparameters of an OFA-MobileNetV3 supernet of a given width."""

    width_mult: float = 1.0
    n_classes: int = 1000
    space: SearchSpace = field(default_factory=SearchSpace)

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
            for w, s, a, se in zip(_BASE_WIDTHS[2:7], _STRIDES[1:], _ACTS[1:], _SE[1:])
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
            _STRIDES[0],
            _SE[0],
            _ACTS[0],
            c_in == c_out,
            has_expand=False,
        )

    def max_mid(self, cin: int) -> int:
        return mid_channels(cin, max(self.space.expand_ratio_list))

    def blocks(self, arch: ArchConfig) -> list[BlockSpec]:
        """The blocks ``arch`` runs, first block included, with their input sizes."""
        size = conv_out_size(arch.r, 2)
        first = self.first_block(size)
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
