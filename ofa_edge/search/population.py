"""A population of subnets as integer arrays, and OFA's evolution operators applied to all at once.

Genes: kernel index ``k`` and expand index ``e`` per block slot ``[P, n_blocks]`` (into the
space's ``ks_list`` / ``expand_ratio_list``), depth value ``d`` per stage ``[P, n_stages]`` and
resolution index ``r`` ``[P]`` into the search's resolution list (a subset of the space's: those
every latency table and the predictor know).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ofa_edge.supernet.space import ArchConfig, SearchSpace


@dataclass(frozen=True)
class Genome:
    """The gene alphabet: a search space restricted to the resolutions the search may use."""

    space: SearchSpace
    resolutions: tuple[int, ...]

    @property
    def n_blocks(self) -> int:
        return self.space.n_blocks

    @property
    def n_stages(self) -> int:
        return self.space.n_stages

    def active(self, d: np.ndarray) -> np.ndarray:
        """bool [P, n_blocks]: the block slots each member's depths run."""
        positions = np.asarray(self.space.slot_positions)
        return positions[None, :] < d[:, np.asarray(self.space.slot_stages)]


@dataclass
class Population:
    """P subnets as index arrays (see the module docstring)."""

    k: np.ndarray
    e: np.ndarray
    d: np.ndarray
    r: np.ndarray

    def __len__(self) -> int:
        return len(self.r)

    def take(self, idx: np.ndarray) -> Population:
        return Population(self.k[idx], self.e[idx], self.d[idx], self.r[idx])

    def put(self, idx: np.ndarray, other: Population) -> None:
        """Overwrite members ``idx`` with ``other``'s (in place)."""
        self.k[idx], self.e[idx], self.d[idx], self.r[idx] = other.k, other.e, other.d, other.r

    @staticmethod
    def concat(parts: Sequence[Population]) -> Population:
        return Population(*(np.concatenate([getattr(p, f) for p in parts]) for f in "kedr"))

    def canonical(self, genome: Genome) -> Population:
        """The same subnets with skipped slots' genes set to index 0 (for dedup and output)."""
        active = genome.active(self.d)
        return Population(
            np.where(active, self.k, 0), np.where(active, self.e, 0), self.d.copy(), self.r.copy()
        )

    def archs(self, genome: Genome) -> list[ArchConfig]:
        space = genome.space
        ks, es = np.asarray(space.ks_list), np.asarray(space.expand_ratio_list)
        return [
            ArchConfig(
                tuple(int(v) for v in ks[self.k[i]]),
                tuple(v.item() for v in es[self.e[i]]),
                tuple(int(v) for v in self.d[i]),
                genome.resolutions[int(self.r[i])],
            )
            for i in range(len(self))
        ]

    @classmethod
    def from_archs(cls, archs: Sequence[ArchConfig], genome: Genome) -> Population:
        space = genome.space
        archs = [a.validate(space) for a in archs]
        return cls(
            np.array([[space.ks_list.index(v) for v in a.ks] for a in archs], dtype=np.int64),
            np.array([[space.expand_ratio_list.index(v) for v in a.e] for a in archs], dtype=np.int64),
            np.array([list(a.d) for a in archs], dtype=np.int64),
            np.array([genome.resolutions.index(a.r) for a in archs], dtype=np.int64),
        )


def random_population(
    genome: Genome, n: int, rng: np.random.Generator, bias: np.ndarray | None = None
) -> Population:
    """``n`` uniformly random subnets; with ``bias`` [n] >= 1, each member's choices lean small.

    A biased member draws every index as ``floor(u**bias * n_choices)`` (u uniform): bias 1 is
    uniform, larger values crowd toward the smallest kernel, expand, depth and resolution, which
    is where tight budgets' feasible subnets are.
    """
    space = genome.space
    nb, ns = genome.n_blocks, genome.n_stages

    def draw(shape: tuple[int, ...], n_choices: int | np.ndarray) -> np.ndarray:
        u = rng.random(shape)
        if bias is not None:
            u = u ** bias.reshape((-1,) + (1,) * (len(shape) - 1))
        return np.minimum((u * n_choices).astype(np.int64), n_choices - 1)

    # Each stage's depth choices, padded to one width (a stage of one fixed depth has one).
    lists = space.depth_lists
    width = max(len(c) for c in lists)
    depths = np.array([list(c) + [c[-1]] * (width - len(c)) for c in lists], dtype=np.int64)
    n_depths = np.array([len(c) for c in lists], dtype=np.int64)
    return Population(
        draw((n, nb), len(space.ks_list)),
        draw((n, nb), len(space.expand_ratio_list)),
        depths[np.arange(ns)[None, :], draw((n, ns), n_depths)],
        draw((n,), len(genome.resolutions)),
    )


def mutate(
    parents: Population,
    genome: Genome,
    rng: np.random.Generator,
    arch_prob: float = 0.1,
    resolution_prob: float = 0.5,
) -> Population:
    """OFA's mutation of each member: resolution redrawn w.p. ``resolution_prob``; each block
    slot's kernel and expand redrawn together and each stage's depth redrawn w.p. ``arch_prob``."""
    n = len(parents)
    fresh = random_population(genome, n, rng)
    slot = rng.random((n, genome.n_blocks)) < arch_prob
    stage = rng.random((n, genome.n_stages)) < arch_prob
    res = rng.random(n) < resolution_prob
    return Population(
        np.where(slot, fresh.k, parents.k),
        np.where(slot, fresh.e, parents.e),
        np.where(stage, fresh.d, parents.d),
        np.where(res, fresh.r, parents.r),
    )


def crossover(a: Population, b: Population, rng: np.random.Generator) -> Population:
    """OFA's uniform crossover: every gene taken from ``a`` or ``b`` with equal odds."""

    def pick(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.where(rng.random(x.shape) < 0.5, x, y)

    return Population(pick(a.k, b.k), pick(a.e, b.e), pick(a.d, b.d), pick(a.r, b.r))
