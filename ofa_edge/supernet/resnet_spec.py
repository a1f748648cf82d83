"""OFA-ResNet50 (MIT's ``ofa_resnet50``, a ResNet50-D): its search space, arch configs and layout.

The space is MIT's: per stage an extra depth ``d`` in {0, 1, 2} over the base depths
(2, 2, 4, 2), per bottleneck block an expand ratio ``e`` (hidden width = ratio x output width),
and six width-multiplier *indices* ``w`` (input-stem hidden width, input-stem output, then one
per stage). ``d[0]`` says whether the input stem's residual 3x3 block runs: MIT runs it only
at the largest depth, so ``d[0]`` is its smallest or largest depth (0 skips it, 2 runs it).

One description serves the nn.Module builders (``ofa_resnet``), the MACs/params counts, the
peak activations and the latency-table ops, so they cannot disagree. Op keys, in MIT's style
(``KIND-input:HxWxC-output:HxWxC[-field:value...]``):

- ``Conv``      3x3 stride-2 conv + BN + ReLU of the input stem (3 -> stem hidden width)
- ``ResConv``   the stem's residual 3x3 conv + BN + ReLU (runs when ``d[0]`` is the largest)
- ``Conv_1``    the stem's last 3x3 conv + BN + ReLU (stem hidden -> stem output width)
- ``MaxPool``   3x3 stride-2 max pooling
- ``bottleneck`` a block, ``-mid:M-stride:S-downsample:0|1`` (1: 2x2 avg pool + 1x1 conv + BN
  on the shortcut, the first block of each stage; 0: identity shortcut)
- ``AvgPool2D`` global average pooling, ``Logits`` the classifier (output: the classes)
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ofa_edge.errors import ConfigError
from ofa_edge.files import write_json
from ofa_edge.supernet.counting import Counts
from ofa_edge.supernet.family import FamilySpec, Op, register_family
from ofa_edge.supernet.space import OFA_RESOLUTIONS
from ofa_edge.supernet.spec import conv_out_size, make_divisible

if TYPE_CHECKING:
    from torch import nn

    from ofa_edge.supernet.ofa_resnet import OFAResNet, ResNet

#: MIT's ResNet50-D layout: base blocks per stage, stage output widths and strides, stem width.
BASE_DEPTHS = (2, 2, 4, 2)
STAGE_WIDTHS = (256, 512, 1024, 2048)
STAGE_STRIDES = (1, 2, 2, 2)
STEM_WIDTH = 64
_N_WIDTHS = len(BASE_DEPTHS) + 2  # stem hidden, stem output, one per stage


def _values(field_name: str, value: Any, length: int, allowed: Sequence[Any]) -> tuple:
    """A scalar (for every entry) or a list of ``length`` values, each in ``allowed``."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * length
    if len(values) != length:
        raise ConfigError(f"{field_name}: {len(values)} entries, expected {length}")
    for i, v in enumerate(values):
        if isinstance(v, bool) or v not in allowed:
            raise ConfigError(f"{field_name}[{i}]={v!r} is not in {list(allowed)}")
    return values


@dataclass(frozen=True)
class ResNetSpace:
    """The elastic dimensions of an OFA-ResNet: extra depths, expand ratios, width multipliers."""

    depth_list: tuple[int, ...] = (0, 1, 2)
    expand_ratio_list: tuple[float, ...] = (0.2, 0.25, 0.35)
    width_mult_list: tuple[float, ...] = (0.65, 0.8, 1.0)
    resolutions: tuple[int, ...] = OFA_RESOLUTIONS

    def __post_init__(self) -> None:
        for name in ("depth_list", "expand_ratio_list", "width_mult_list", "resolutions"):
            values = tuple(sorted(getattr(self, name)))
            if not values:
                raise ConfigError(f"{name} is empty")
            object.__setattr__(self, name, values)
        if min(self.depth_list) < 0:
            raise ConfigError(f"depth_list: extra depths must be >= 0, got {list(self.depth_list)}")
        if min(self.expand_ratio_list) <= 0 or min(self.width_mult_list) <= 0:
            raise ConfigError("expand_ratio_list and width_mult_list must be above 0")

    @property
    def max_depth(self) -> int:
        return max(self.depth_list)

    @property
    def n_stages(self) -> int:
        return len(BASE_DEPTHS)

    @property
    def stage_slots(self) -> list[range]:
        """The block slots (indices into ``e``) of each stage: its base depth plus the largest extra."""
        starts = list(itertools.accumulate((b + self.max_depth for b in BASE_DEPTHS), initial=0))
        return [range(a, b) for a, b in itertools.pairwise(starts)]

    @property
    def n_blocks(self) -> int:
        """Bottleneck slots (MIT's ``e`` has one entry each): 18 for depths up to 2."""
        return sum(BASE_DEPTHS) + self.n_stages * self.max_depth

    @property
    def stem_depths(self) -> tuple[int, ...]:
        """The values of ``d[0]``: skip (smallest) or run (largest) the stem's residual block."""
        return tuple(sorted({min(self.depth_list), self.max_depth}))

    def check_resolution(self, r: Any) -> int:
        if isinstance(r, bool) or r not in self.resolutions:
            res = self.resolutions
            steps = {b - a for a, b in itertools.pairwise(res)}
            allowed = f"{res[0]}..{res[-1]} step {steps.pop()}" if len(steps) == 1 else str(list(res))
            raise ConfigError(f"r={r!r} is not a resolution of this space; allowed: {allowed}")
        return int(r)

    def d(self, value: Any) -> tuple[int, ...]:
        """``d`` validated: the stem's entry (``stem_depths``), then one per stage."""
        values = _values("d", value, 1 + self.n_stages, self.depth_list)
        if values[0] not in self.stem_depths:
            raise ConfigError(
                f"d[0]={values[0]!r} is not in {list(self.stem_depths)} "
                "(d[0] skips the input stem's residual block at the smallest, runs it at the largest)"
            )
        return values

    def e(self, value: Any) -> tuple[float, ...]:
        return _values("e", value, self.n_blocks, self.expand_ratio_list)

    def w(self, value: Any) -> tuple[int, ...]:
        """``w`` validated: indices into ``width_mult_list``, as MIT's arch dicts hold them."""
        return _values("w", value, _N_WIDTHS, range(len(self.width_mult_list)))

    def sample(self, rng: random.Random | None = None) -> ResNetArch:
        """A uniformly random subnet (MIT's sampling: the stem skips or runs, each other choice free)."""
        rng = rng or random.Random()
        return ResNetArch(
            d=(rng.choice(self.stem_depths), *(rng.choice(self.depth_list) for _ in range(self.n_stages))),
            e=tuple(rng.choice(self.expand_ratio_list) for _ in range(self.n_blocks)),
            w=tuple(rng.randrange(len(self.width_mult_list)) for _ in range(_N_WIDTHS)),
            r=rng.choice(self.resolutions),
        )

    def max_arch(self, r: int | None = None) -> ResNetArch:
        return self._uniform(max, len(self.width_mult_list) - 1, max(self.resolutions) if r is None else r)

    def min_arch(self, r: int | None = None) -> ResNetArch:
        return self._uniform(min, 0, min(self.resolutions) if r is None else r)

    def _uniform(self, pick: Any, w: int, r: int) -> ResNetArch:
        return ResNetArch(
            d=(pick(self.depth_list),) * (1 + self.n_stages),
            e=(pick(self.expand_ratio_list),) * self.n_blocks,
            w=(w,) * _N_WIDTHS,
            r=self.check_resolution(r),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "depth_list": list(self.depth_list),
            "expand_ratio_list": list(self.expand_ratio_list),
            "width_mult_list": list(self.width_mult_list),
            "resolutions": list(self.resolutions),
        }


_ARCH_KEYS = ("d", "e", "w", "r", "image_size")


@dataclass(frozen=True)
class ResNetArch:
    """One OFA-ResNet subnet, MIT's arch dict ``{"d": [5], "e": [18], "w": [6]}`` plus resolution.

    ``e`` entries of blocks beyond a stage's depth are kept (as MIT does) but unused.
    """

    d: tuple[int, ...]
    e: tuple[float, ...]
    w: tuple[int, ...]
    r: int

    def validate(self, space: ResNetSpace) -> ResNetArch:
        """The arch, or a ``ConfigError`` naming the bad field, index and allowed values."""
        return ResNetArch(space.d(self.d), space.e(self.e), space.w(self.w), space.check_resolution(self.r))

    def to_dict(self) -> dict[str, Any]:
        return {"d": list(self.d), "e": list(self.e), "w": list(self.w), "r": self.r}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def save(self, path: str | Path) -> None:
        """Write the arch as JSON (what ``ofa-edge search --out`` writes for every family)."""
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, *, default_r: int | None = None) -> ResNetArch:
        """From MIT-style dicts: ``r`` may be ``image_size`` or a one-element list."""
        if not isinstance(data, dict):
            raise ConfigError(f"arch: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_ARCH_KEYS))
        if unknown:
            raise ConfigError(f"arch: unknown field(s) {unknown}; allowed: d, e, w, r (or image_size)")
        missing = [k for k in ("d", "e", "w") if k not in data]
        if missing:
            raise ConfigError(f"arch: missing field(s) {missing} (an OFA-ResNet arch has d, e and w)")
        r = data.get("r", data.get("image_size", default_r))
        if isinstance(r, (list, tuple)) and len(r) == 1:
            r = r[0]
        if r is None:
            raise ConfigError("arch: missing field r (the input resolution; MIT calls it image_size)")
        if not isinstance(r, int) or isinstance(r, bool):
            raise ConfigError(f"arch: r={r!r} is not an integer")
        as_tuple = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in data.items()}
        return cls(d=as_tuple["d"], e=as_tuple["e"], w=as_tuple["w"], r=r)


@dataclass(frozen=True)
class BottleneckSpec:
    """A concrete bottleneck block: 1x1 (cin->mid), 3x3 (mid->mid, stride), 1x1 (mid->cout)."""

    in_size: int
    cin: int
    mid: int
    cout: int
    stride: int
    downsample: bool  # avg pool + 1x1 conv + BN on the shortcut (else identity)

    @property
    def out_size(self) -> int:
        return conv_out_size(self.in_size, self.stride)


def bottleneck(op: Op) -> BottleneckSpec:
    """The block a ``bottleneck`` op runs (its key's shapes and fields say it all)."""
    f = dict(op.fields)
    return BottleneckSpec(
        op.input[0], op.input[2], f["mid"], op.output[2], f["stride"], bool(f["downsample"])
    )


def _conv_counts(cin: int, cout: int, k: int, out_size: int, bn: bool = True) -> Counts:
    """A bias-free k x k conv producing an ``out_size`` square map, with or without BN."""
    weights = cin * cout * k * k
    return Counts(weights * out_size**2, weights + (2 * cout if bn else 0))


def _area(shape: tuple[int, ...]) -> int:
    n = 1
    for v in shape:
        n *= v
    return n


@register_family
@dataclass(frozen=True)
class ResNetSpec(FamilySpec):
    """Fixed hyperparameters of an OFA-ResNet supernet: classes and search space (layout: MIT's)."""

    family: ClassVar[str] = "ofa_resnet"
    #: MIT's class name of the static subnets.
    static_name: ClassVar[str] = "ResNets"

    n_classes: int = 1000
    space: ResNetSpace = field(default_factory=ResNetSpace)

    def __post_init__(self) -> None:
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, int) or self.n_classes < 1:
            raise ConfigError(f"n_classes={self.n_classes!r}: expected a positive integer")

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "n_classes": self.n_classes, "space": self.space.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResNetSpec:
        try:
            space = data["space"]
            return cls(int(data["n_classes"]), ResNetSpace(**{k: tuple(v) for k, v in space.items()}))
        except (KeyError, TypeError) as err:
            raise ConfigError(
                f"OFA-ResNet spec {data!r}: {err}", hint="write ResNetSpec.to_dict() output"
            ) from None

    def describe(self) -> str:
        s = self.space
        return (
            f"ofa_resnet, {self.n_classes} classes, d {list(s.depth_list)}, "
            f"e {list(s.expand_ratio_list)}, w {list(s.width_mult_list)}"
        )

    # --- widths ------------------------------------------------------------------------------

    def _widths(self, base: int) -> tuple[int, ...]:
        return tuple(make_divisible(base * w) for w in self.space.width_mult_list)

    @property
    def stem_widths(self) -> tuple[int, ...]:
        """The stem's output width per width index (its hidden width is half, rounded to 8)."""
        return self._widths(STEM_WIDTH)

    @property
    def stem_mid_widths(self) -> tuple[int, ...]:
        return tuple(make_divisible(c // 2) for c in self.stem_widths)

    @property
    def stage_widths(self) -> list[tuple[int, ...]]:
        return [self._widths(base) for base in STAGE_WIDTHS]

    def max_mid(self, stage: int) -> int:
        return mid_channels(max(self.stage_widths[stage]), max(self.space.expand_ratio_list))

    # --- what an arch runs -------------------------------------------------------------------

    def runs_stem_block(self, arch: ResNetArch) -> bool:
        """MIT runs the stem's residual block only when ``d[0]`` is the largest depth."""
        return arch.d[0] == self.space.max_depth

    def stem_sizes(self, r: int) -> tuple[int, int]:
        """Sides of the stem's output and of the max pool's (the first block's input)."""
        stem = conv_out_size(r, 2)
        return stem, conv_out_size(stem, 2)

    def blocks(self, arch: ResNetArch) -> list[BottleneckSpec]:
        """The bottleneck blocks ``arch`` runs, in order, with their input sizes."""
        size = self.stem_sizes(arch.r)[1]
        cin = self.stem_widths[arch.w[1]]
        blocks = []
        for stage, slots in enumerate(self.space.stage_slots):
            cout = self.stage_widths[stage][arch.w[stage + 2]]
            for i, slot in enumerate(slots[: BASE_DEPTHS[stage] + arch.d[stage + 1]]):
                stride = STAGE_STRIDES[stage] if i == 0 else 1
                block = BottleneckSpec(size, cin, mid_channels(cout, arch.e[slot]), cout, stride, i == 0)
                blocks.append(block)
                size, cin = block.out_size, cout
        return blocks

    def ops(self, arch: ResNetArch) -> list[Op]:
        """The ops ``arch`` runs, in order; its latency is (about) the sum of theirs."""
        r = arch.r
        stem, pooled = self.stem_sizes(r)
        mid, out = self.stem_mid_widths[arch.w[0]], self.stem_widths[arch.w[1]]
        ops = [Op("Conv", (r, r, 3), (stem, stem, mid))]
        if self.runs_stem_block(arch):
            ops.append(Op("ResConv", (stem, stem, mid), (stem, stem, mid)))
        ops += [
            Op("Conv_1", (stem, stem, mid), (stem, stem, out)),
            Op("MaxPool", (stem, stem, out), (pooled, pooled, out)),
        ]
        for b in self.blocks(arch):
            fields = (("mid", b.mid), ("stride", b.stride), ("downsample", int(b.downsample)))
            ops.append(
                Op("bottleneck", (b.in_size, b.in_size, b.cin), (b.out_size, b.out_size, b.cout), fields)
            )
        s, c = ops[-1].output[0], ops[-1].output[2]
        return [*ops, Op("AvgPool2D", (s, s, c), (1, 1, c)), Op("Logits", (1, 1, c), (self.n_classes,))]

    def arch_from_dict(self, data: Any, *, default_r: int | None = None) -> ResNetArch:
        return ResNetArch.from_dict(data, default_r=default_r)

    def distinct_ops(self, r: int) -> list[Op]:
        """Every distinct op a subnet can run at resolution ``r``.

        At the largest depths every block slot runs; each stage boundary sees every pair of
        widths when the stage widths alternate between two indices ``a, b``, and uniform expand
        ratios give every (slot, ratio); the stem's hidden width ``x`` varies on its own.
        """
        space, n_w = self.space, range(len(self.space.width_mult_list))
        r = space.check_resolution(r)
        found: dict[str, Op] = {}
        for x, a, b, e in itertools.product(n_w, n_w, n_w, space.expand_ratio_list):
            for d0 in space.stem_depths:
                d = (d0,) + (space.max_depth,) * space.n_stages
                for op in self.ops(ResNetArch(d, (e,) * space.n_blocks, (x, a, b, a, b, a), r)):
                    found.setdefault(op.key, op)
        return list(found.values())

    # --- costs -------------------------------------------------------------------------------

    def op_counts(self, op: Op) -> Counts:
        """MACs and parameters of one op, as MIT's ``count_net_flops`` / ``count_parameters`` count."""
        cin, cout = op.input[-1], op.output[-1]
        if op.kind in ("Conv", "ResConv", "Conv_1"):
            return _conv_counts(cin, cout, 3, op.output[0])
        if op.kind == "bottleneck":
            b = bottleneck(op)
            parts = [
                _conv_counts(b.cin, b.mid, 1, b.in_size),
                _conv_counts(b.mid, b.mid, 3, b.out_size),
                _conv_counts(b.mid, b.cout, 1, b.out_size),
            ]
            if b.downsample:
                parts.append(_conv_counts(b.cin, b.cout, 1, b.out_size))
            return Counts(sum(p.macs for p in parts), sum(p.params for p in parts))
        if op.kind == "Logits":
            return Counts(cin * cout, cin * cout + cout)
        return Counts(0, 0)  # pooling

    def op_peak(self, op: Op) -> int:
        """Peak live activation elements while ``op`` runs (batch 1): the largest, over its
        layers, of the layer's input plus output plus, in a block, the shortcut tensor kept for
        the add (MIT computes the shortcut first, so a downsampled one lives through the convs)."""
        if op.kind != "bottleneck":
            return _area(op.input) + _area(op.output)
        b = bottleneck(op)
        x, out = b.in_size**2 * b.cin, b.out_size**2 * b.cout
        mid1, mid2 = b.in_size**2 * b.mid, b.out_size**2 * b.mid
        kept = out if b.downsample else x
        if not b.downsample:  # identity: conv1 reads the kept tensor itself
            return max(x + mid1, mid1 + mid2 + kept, mid2 + out + kept)
        return max(x + kept, x + mid1 + kept, mid1 + mid2 + kept, mid2 + out + kept)

    # --- modules (torch) ---------------------------------------------------------------------

    def op_module(self, op: Op) -> nn.Module:
        """``op`` as a standalone module taking a (1, C, H, W) input (a latency micro-model)."""
        from ofa_edge.supernet.ofa_resnet import op_module

        return op_module(self, op)

    def build(self, dropout_rate: float = 0.0) -> OFAResNet:
        """The (untrained) elastic supernet of this spec."""
        from ofa_edge.supernet.ofa_resnet import OFAResNet

        return OFAResNet(self, dropout_rate)

    def static_net(self, arch: ResNetArch, dropout_rate: float = 0.0) -> ResNet:
        """An (untrained) static subnet of ``arch``."""
        from ofa_edge.supernet.ofa_resnet import ResNet

        return ResNet(self, arch.validate(self.space), dropout_rate)


def mid_channels(cout: int, expand_ratio: float) -> int:
    """Hidden width of a bottleneck (MIT: make_divisible(round(cout * e), 8))."""
    return make_divisible(round(cout * expand_ratio))
