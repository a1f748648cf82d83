"""The ops a supernet runs, as latency-table keys (MIT's key format, so tables convert both ways).

A subnet is a sum of ops: the first conv, each block it runs (input size, in/out/mid channels,
kernel, stride, shortcut, SE, activation), the final expand conv, the pooling, the feature-mix
conv and the classifier. Blocks 2-4 of a stage have the same shape, so a supernet at one
resolution has few distinct ops (OFA-MBv3: 96).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ofa_edge.supernet.space import ArchConfig
from ofa_edge.supernet.spec import BlockSpec, MBv3Spec


@dataclass(frozen=True, order=True)
class Op:
    """One table entry's operation. ``kind`` is MIT's layer name; ``block`` set for blocks."""

    kind: str  # "Conv", "expanded_conv", "Conv_1", "AvgPool2D", "Conv_2", "Logits"
    input: tuple[int, ...]
    output: tuple[int, ...]
    block: BlockSpec | None = None

    @property
    def key(self) -> str:
        parts = [
            self.kind,
            "input:" + "x".join(map(str, self.input)),
            "output:" + "x".join(map(str, self.output)),
        ]
        b = self.block
        if b is not None:
            parts += [
                f"expand:{b.mid}",
                f"kernel:{b.k}",
                f"stride:{b.stride}",
                f"idskip:{int(b.shortcut)}",
                f"se:{int(b.se)}",
                f"hs:{int(b.act == 'h_swish')}",
            ]
        return "-".join(parts)


def subnet_ops(spec: MBv3Spec, arch: ArchConfig) -> list[Op]:
    """The ops ``arch`` runs, in order; its latency is (about) the sum of theirs."""
    r = arch.r
    size = spec.stem_size(r)
    ops = [Op("Conv", (r, r, 3), (size, size, spec.first_conv_width))]
    blocks = spec.blocks(arch)
    for b in blocks:
        ops.append(Op("expanded_conv", (b.in_size, b.in_size, b.cin), (b.out_size, b.out_size, b.cout), b))
    last = blocks[-1]
    s, fe, lc = last.out_size, spec.final_expand_width, spec.last_channel
    ops += [
        Op("Conv_1", (s, s, last.cout), (s, s, fe)),
        Op("AvgPool2D", (s, s, fe), (1, 1, fe)),
        Op("Conv_2", (1, 1, fe), (1, 1, lc)),
        Op("Logits", (1, 1, lc), (spec.n_classes,)),
    ]
    return ops


def enumerate_ops(spec: MBv3Spec, resolutions: Iterable[int]) -> list[Op]:
    """Every distinct op any subnet can run at these resolutions (deduplicated, sorted)."""
    space = spec.space
    found: dict[str, Op] = {}
    for r in resolutions:
        space.check_resolution(r)
        for k in space.ks_list:
            for e in space.expand_ratio_list:
                # Max depth reaches every block slot; uniform k/e covers each (slot, k, e) shape.
                arch = ArchConfig(
                    (k,) * space.n_blocks, (e,) * space.n_blocks, (space.max_depth,) * space.n_stages, r
                )
                for op in subnet_ops(spec, arch):
                    found.setdefault(op.key, op)
    return sorted(found.values(), key=lambda op: op.key)
