"""Each family's genome (see :mod:`ofa_edge.search.population`), found by family name.

- MBConv families (OFA-MBv3, OFA-ProxylessNAS): ``ks`` and ``e`` per block slot, ``d`` per stage;
  a slot's op depends on its own kernel and expand only, and runs when the stage's depth
  reaches it. A mutation redraws a slot's kernel and expand together (OFA's).
- OFA-ResNet: ``d`` (the stem's residual block, then one per stage), ``e`` per bottleneck slot,
  ``w`` the six width indices; ops depend on the widths before and after them (a stage's first
  block on the previous stage's width). A mutation redraws each entry on its own (MIT's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ofa_edge.errors import ConfigError
from ofa_edge.search.population import Features, Genome, Position
from ofa_edge.supernet.family import FamilySpec
from ofa_edge.supernet.resnet_spec import BASE_DEPTHS, ResNetArch
from ofa_edge.supernet.space import ArchConfig


def _resolution_map(genome: Genome, encoder: Any) -> np.ndarray:
    """Each searchable resolution's index in the encoder's list."""
    return np.array([encoder.resolutions.index(r) for r in genome.resolutions], dtype=np.int64)


class MBConvGenome(Genome):
    """Kernel, expand and depth genes of an MBConv supernet."""

    mutation_groups = (("ks", "e"), ("d",))
    arch_type = ArchConfig

    def _choices(self) -> dict[str, tuple[tuple[Any, ...], ...]]:
        s = self.spec.space
        return {"ks": (s.ks_list,) * s.n_blocks, "e": (s.expand_ratio_list,) * s.n_blocks, "d": s.depth_lists}

    def _runs(self) -> list[tuple[int, int]]:
        s = self.spec.space
        return list(zip(s.slot_stages, s.slot_positions))

    def _positions(self) -> tuple[Position, ...]:
        ops = self.spec.ops(self.spec.space.max_arch(self.resolutions[-1]))
        return tuple(
            Position() if op.slot is None else Position((("ks", op.slot), ("e", op.slot)), op.slot)
            for op in ops
        )

    def features(self, encoder: Any) -> Features:
        enc, space = encoder, self.spec.space
        # Another family's encoder has no kernels or expands: refused the same way.
        ks, expands = tuple(getattr(enc, "ks_list", ())), tuple(getattr(enc, "expand_list", ()))
        if ks != tuple(space.ks_list) or expands != tuple(space.expand_ratio_list):
            raise ConfigError(
                f"the predictor encodes kernels {list(ks)} and expands {list(expands)}, "
                f"the supernet has {list(space.ks_list)} and {list(space.expand_ratio_list)}",
                hint="use the predictor trained for this supernet",
            )
        if enc.stage_max_depths != space.stage_max_depths:
            raise ConfigError(
                "the predictor's block layout differs from the supernet's", hint="use its own predictor"
            )
        r_map = _resolution_map(self, enc)
        return lambda pop, active: enc.encode_indices(pop.ks, pop.e, self.depths(pop), r_map[pop.r])


class ResNetGenome(Genome):
    """Depth, expand and width genes of an OFA-ResNet."""

    mutation_groups = (("d",), ("e",), ("w",))
    arch_type = ResNetArch

    def _choices(self) -> dict[str, tuple[tuple[Any, ...], ...]]:
        s = self.spec.space
        return {
            "d": (s.stem_depths,) + (s.depth_list,) * s.n_stages,
            "e": (s.expand_ratio_list,) * s.n_blocks,
            "w": (tuple(range(len(s.width_mult_list))),) * (2 + s.n_stages),
        }

    def _runs(self) -> list[tuple[int, int]]:
        """The stem's residual block (at the largest ``d[0]``), then every bottleneck slot."""
        s = self.spec.space
        slots = [(1 + st, i - BASE_DEPTHS[st]) for st, r in enumerate(s.stage_slots) for i in range(len(r))]
        return [(0, s.max_depth - 1), *slots]

    def _positions(self) -> tuple[Position, ...]:
        """Conv, ResConv, Conv_1, MaxPool (stem widths ``w[0]``, ``w[1]``), the bottlenecks (their
        input and output widths, their expand), AvgPool and Logits (the last stage's width)."""
        s = self.spec.space
        stem = (
            Position((("w", 0),)),
            Position((("w", 0),), 0),
            Position((("w", 0), ("w", 1))),
            Position((("w", 1),)),
        )
        blocks = []
        for st, slots in enumerate(s.stage_slots):
            for i, slot in enumerate(slots):
                widths = (("w", 1 + st), ("w", 2 + st)) if i == 0 else (("w", 2 + st),)
                blocks.append(Position((*widths, ("e", slot)), 1 + slot))
        last = Position((("w", 1 + s.n_stages),))
        return (*stem, *blocks, last, last)

    def features(self, encoder: Any) -> Features:
        s, theirs = self.spec.space, getattr(encoder, "space", None)
        fields = ("depth_list", "expand_ratio_list", "width_mult_list")
        if [getattr(theirs, f, None) for f in fields] != [getattr(s, f) for f in fields]:
            raise ConfigError(
                "the predictor does not encode this OFA-ResNet's space (depths, expands and widths "
                f"{[list(getattr(s, f)) for f in fields]})",
                hint="use the predictor trained for this supernet (MIT's ofa_resnet50_acc_predictor.pth)",
            )
        r_map = _resolution_map(self, encoder)
        return lambda pop, active: encoder.encode_indices(self.depths(pop), pop.e, pop.w, r_map[pop.r])


#: The genome of each family the search covers, by family name.
GENOMES: dict[str, type[Genome]] = {
    "mbv3": MBConvGenome,
    "proxyless": MBConvGenome,
    "ofa_resnet": ResNetGenome,
}


def genome_for(supernet: str, spec: FamilySpec, resolutions: Sequence[int]) -> Genome:
    """The genome of ``spec``'s family over ``resolutions`` (a one-line ConfigError if none)."""
    if spec.family not in GENOMES:
        raise ConfigError(
            f"{supernet}: the search does not cover {spec.family} supernets (no genome for the family)",
            hint=f"search a supernet of: {', '.join(sorted(GENOMES))}",
        )
    return GENOMES[spec.family](spec, resolutions)
