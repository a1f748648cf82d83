"""A population of subnets as integer arrays, and OFA's evolution operators applied to all at once.

Every family's subnets are a few named *genes*, each an index array ``[P, n_columns]`` into its
columns' choices (named after the arch's fields: MBConv ``ks``, ``e``, ``d``; OFA-ResNet ``d``,
``e``, ``w``), plus the resolution index ``r`` ``[P]`` into the search's resolution list (a subset
of the space's: those every latency table and the predictor know). A :class:`Genome` is one
family's alphabet; everything else (sampling, mutation, crossover, dedup, costs) is generic.

A genome also says which op of the largest subnet depends on which gene columns (its
:class:`Position` list), so every cost is a gather of per-op values by "variant id" (see
:mod:`ofa_edge.search.costs`), and which optional ops (block slots) a member's depths run.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from ofa_edge.supernet.family import FamilySpec, Op

#: Features of a population from its genes and run mask (a predictor's encoder, vectorized).
Features = Callable[["Population", np.ndarray], np.ndarray]
#: A gene column: (gene name, column).
Column = tuple[str, int]


@dataclass
class Population:
    """P subnets as index arrays (see the module docstring)."""

    genes: dict[str, np.ndarray]
    r: np.ndarray

    def __getattr__(self, name: str) -> np.ndarray:
        """A gene by name (``pop.d``)."""
        genes = self.__dict__.get("genes", {})
        if name not in genes:
            raise AttributeError(name)
        return genes[name]

    def __len__(self) -> int:
        return len(self.r)

    def take(self, idx: np.ndarray) -> Population:
        return Population({n: g[idx] for n, g in self.genes.items()}, self.r[idx])

    def put(self, idx: np.ndarray, other: Population) -> None:
        """Overwrite members ``idx`` with ``other``'s (in place)."""
        for name, g in self.genes.items():
            g[idx] = other.genes[name]
        self.r[idx] = other.r

    @staticmethod
    def concat(parts: Sequence[Population]) -> Population:
        names = parts[0].genes
        return Population(
            {n: np.concatenate([p.genes[n] for p in parts]) for n in names},
            np.concatenate([p.r for p in parts]),
        )

    def rows(self) -> np.ndarray:
        """int64 [P, columns + 1]: every gene column, then ``r``."""
        return np.concatenate([*self.genes.values(), self.r[:, None]], axis=1)

    def crossover(self, other: Population, rng: np.random.Generator) -> Population:
        """OFA's uniform crossover: every gene entry taken from ``self`` or ``other`` with equal odds."""

        def pick(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return np.where(rng.random(x.shape) < 0.5, x, y)

        genes = {n: pick(g, other.genes[n]) for n, g in self.genes.items()}
        return Population(genes, pick(self.r, other.r))

    def archs(self, genome: Genome) -> list[Any]:
        """The members as the family's arch configs."""
        return genome.archs(self)

    @classmethod
    def from_archs(cls, archs: Sequence[Any], genome: Genome) -> Population:
        """The population of ``archs`` (validated against the genome's space)."""
        return genome.from_archs(archs)


@dataclass(frozen=True)
class _Gather:
    """How gene arrays map to variant ids: a position's id is its offset plus its dependency
    columns' indices in mixed radix (the last fastest)."""

    genes: list[str]  # the stacked genes, in order (then one all-zero padding column)
    offsets: np.ndarray  # [n_pos]
    cols: np.ndarray  # [n_pos, J] dependency columns in the stack (padding: the zero column)
    strides: np.ndarray  # [n_pos, J]
    runs: np.ndarray  # [n_pos] run-mask column (-1: always runs)
    n_variants: int


@dataclass(frozen=True)
class Position:
    """One op of the largest subnet: the gene columns its op depends on, and the column of the
    genome's run mask saying whether it runs (None: it always does)."""

    deps: tuple[Column, ...] = ()
    runs: int | None = None


class Genome(abc.ABC):
    """One family's gene alphabet over a spec, restricted to the resolutions the search may use.

    Families declare their genes' choices, which genes mutate together, how depths run optional
    ops and which gene columns each op depends on; the rest is generic over them.
    """

    #: Genes redrawn together by a mutation, per column (every gene in a group has as many columns).
    mutation_groups: ClassVar[tuple[tuple[str, ...], ...]]
    #: The arch class of the family (built from the genes' values, fields named as the genes).
    arch_type: ClassVar[Any]

    def __init__(self, spec: FamilySpec, resolutions: Sequence[int]) -> None:
        self.spec = spec
        self.resolutions = tuple(resolutions)
        self.choices = self._choices()
        self.n_choices = {
            n: np.array([len(c) for c in cols], dtype=np.int64) for n, cols in self.choices.items()
        }
        depths = self.choices["d"]
        width = max(len(c) for c in depths)
        self._depth_values = np.array([list(c) + [c[-1]] * (width - len(c)) for c in depths], dtype=np.int64)
        # A run-mask column is on when its d column's index reaches the first depth above the
        # column's threshold (depth choices are sorted).
        assert all(list(c) == sorted(c) for c in depths)
        runs = self._runs()
        self._run_stage = np.array([s for s, _ in runs], dtype=np.int64)
        self._run_from = np.array([sum(v <= below for v in depths[s]) for s, below in runs], dtype=np.int64)
        self.positions = self._positions()
        self._ops: dict[int, list[Op]] = {}  # variant ops by resolution
        largest = spec.ops(spec.space.max_arch(self.resolutions[-1]))
        assert len(largest) == len(self.positions), "a genome's positions are its largest subnet's ops"

    @property
    def space(self) -> Any:
        return self.spec.space

    # --- what a family declares ---------------------------------------------------------------

    @abc.abstractmethod
    def _choices(self) -> dict[str, tuple[tuple[Any, ...], ...]]:
        """Per gene (in arch field order, ``d`` the depths), the values each column may take."""

    @abc.abstractmethod
    def _runs(self) -> list[tuple[int, int]]:
        """Per run-mask column (an optional op): the ``d`` column and the depth it needs to exceed."""

    @abc.abstractmethod
    def _positions(self) -> tuple[Position, ...]:
        """The largest subnet's ops, in order, as positions (see :class:`Position`)."""

    @abc.abstractmethod
    def features(self, encoder: Any) -> Features:
        """Predictor features of populations under ``encoder`` (one-line ConfigError if it does not
        encode this genome's space)."""

    # --- generic ------------------------------------------------------------------------------

    def active(self, d: np.ndarray) -> np.ndarray:
        """bool [P, n_runs]: the optional ops (block slots) each member's depths ``d`` run."""
        return d[:, self._run_stage] >= self._run_from

    def depths(self, pop: Population) -> np.ndarray:
        """int64 [P, d columns]: the members' depth values (``d`` holds indices)."""
        return self._depth_values[np.arange(pop.d.shape[1]), pop.d]

    def random(self, n: int, rng: np.random.Generator, bias: np.ndarray | None = None) -> Population:
        """``n`` uniformly random subnets; with ``bias`` [n] >= 1, each member's choices lean small.

        A biased member draws every index as ``floor(u**bias * n_choices)`` (u uniform): bias 1 is
        uniform, larger values crowd toward the first (smallest) choice of every gene and the
        smallest resolution, which is where tight budgets' feasible subnets are.
        """

        def draw(shape: tuple[int, ...], n_choices: int | np.ndarray) -> np.ndarray:
            u = rng.random(shape)
            if bias is not None:
                u = u ** bias.reshape((-1,) + (1,) * (len(shape) - 1))
            return np.minimum((u * n_choices).astype(np.int64), n_choices - 1)

        genes = {name: draw((n, len(c)), c) for name, c in self.n_choices.items()}
        return Population(genes, draw((n,), len(self.resolutions)))

    def mutate(
        self, parents: Population, rng: np.random.Generator, arch_prob: float = 0.1, res_prob: float = 0.5
    ) -> Population:
        """OFA's mutation of each member: resolution redrawn w.p. ``res_prob``, each column of a
        mutation group (all its genes together) w.p. ``arch_prob``."""
        n = len(parents)
        fresh = self.random(n, rng)
        genes = dict(parents.genes)
        for group in self.mutation_groups:
            hit = rng.random((n, len(self.n_choices[group[0]]))) < arch_prob
            for name in group:
                genes[name] = np.where(hit, fresh.genes[name], parents.genes[name])
        return Population(genes, np.where(rng.random(n) < res_prob, fresh.r, parents.r))

    @cached_property
    def _gates(self) -> dict[str, np.ndarray]:
        """Per gene, each column's run-mask column when only ops of that one optional op read it
        (the column is moot when it does not run), else -1."""
        readers: dict[Column, set[int | None]] = {}
        for pos in self.positions:
            for col in pos.deps:
                readers.setdefault(col, set()).add(pos.runs)
        gates = {}
        for name, n in self.n_choices.items():
            runs = [readers.get((name, c), {None}) for c in range(len(n))]
            gate = np.array([-1 if len(s) > 1 or None in s else next(iter(s)) for s in runs], dtype=np.int64)
            if (gate >= 0).any():
                gates[name] = gate
        return gates

    def canonical(self, pop: Population) -> Population:
        """The same subnets with moot genes (of ops not run) set to index 0 (for dedup and output)."""
        run = np.concatenate([self.active(pop.d), np.ones((len(pop), 1), dtype=bool)], axis=1)
        genes = {
            n: np.where(run[:, self._gates[n]], g, 0) if n in self._gates else g.copy()
            for n, g in pop.genes.items()
        }
        return Population(genes, pop.r.copy())

    def archs(self, pop: Population) -> list[Any]:
        """The members as arch configs of the family."""
        rows = {n: g.tolist() for n, g in pop.genes.items()}
        return [
            self.arch_type(
                **{
                    n: tuple(cols[c][v] for c, v in enumerate(rows[n][i])) for n, cols in self.choices.items()
                },
                r=self.resolutions[int(pop.r[i])],
            )
            for i in range(len(pop))
        ]

    def from_archs(self, archs: Sequence[Any]) -> Population:
        """The population of ``archs`` (validated against the space; resolutions the search's)."""
        archs = [a.validate(self.space) for a in archs]
        genes = {
            n: np.array(
                [[cols[c].index(v) for c, v in enumerate(getattr(a, n))] for a in archs], dtype=np.int64
            )
            for n, cols in self.choices.items()
        }
        genes = {n: g.reshape(len(archs), len(self.choices[n])) for n, g in genes.items()}
        return Population(genes, np.array([self.resolutions.index(a.r) for a in archs], dtype=np.int64))

    def largest(self) -> Population:
        """The largest subnet at every searchable resolution."""
        return self.from_archs([self.space.max_arch(r) for r in self.resolutions])

    # --- op variants (what costs gather) --------------------------------------------------------

    @cached_property
    def _gather(self) -> _Gather:
        names = list(self.n_choices)
        starts = dict(zip(names, itertools.accumulate((len(self.n_choices[n]) for n in names), initial=0)))
        pad = sum(len(c) for c in self.n_choices.values())  # the stack's all-zero column
        width = max(1, max(len(p.deps) for p in self.positions))
        cols = np.full((len(self.positions), width), pad, dtype=np.int64)
        strides = np.zeros((len(self.positions), width), dtype=np.int64)
        offsets = np.zeros(len(self.positions), dtype=np.int64)
        total = 0
        for i, pos in enumerate(self.positions):
            counts = [int(self.n_choices[g][c]) for g, c in pos.deps]
            cols[i, : len(pos.deps)] = [starts[g] + c for g, c in pos.deps]
            strides[i, : len(pos.deps)] = [int(np.prod(counts[j + 1 :])) for j in range(len(counts))]
            offsets[i] = total
            total += int(np.prod(counts))
        runs = np.array([-1 if p.runs is None else p.runs for p in self.positions], dtype=np.int64)
        return _Gather(names, offsets, cols, strides, runs, total)

    @property
    def n_variants(self) -> int:
        """Distinct (position, dependency choices) pairs: the width of a cost's value table."""
        return self._gather.n_variants

    def _stack(self, pop: Population) -> np.ndarray:
        return np.concatenate(
            [*(pop.genes[n] for n in self._gather.genes), np.zeros((len(pop), 1), dtype=np.int64)], axis=1
        )

    def variant_ids(self, pop: Population, active: np.ndarray) -> np.ndarray:
        """int64 [P, n_positions]: each member's variant of every op position, -1 where it does not
        run (``active``: :meth:`active` of its depths)."""
        return np.where(self.position_runs(active), self.all_variant_ids(pop), -1)

    def all_variant_ids(self, pop: Population) -> np.ndarray:
        """int64 [P, n_positions]: each member's variant of every op position, run or not (depths
        decide only whether an op runs, never which variant it is)."""
        gather = self._gather
        stack = self._stack(pop)
        ids = gather.offsets + stack[:, gather.cols[:, 0]] * gather.strides[:, 0]
        for j in range(1, gather.cols.shape[1]):
            ids += stack[:, gather.cols[:, j]] * gather.strides[:, j]
        return ids

    def position_runs(self, active: np.ndarray) -> np.ndarray:
        """bool [P, n_positions]: which op positions run, from the run mask :meth:`active`."""
        return np.concatenate([active, np.ones((len(active), 1), dtype=bool)], axis=1)[:, self._gather.runs]

    @cached_property
    def _probes(self) -> list[tuple[dict[Column, int], list[tuple[int, int]]]]:
        """Subnets to read every variant's op off: the largest with some columns set, each with
        the (position, variant id) pairs it shows; (position, choices) pairs are packed greedily
        into as few probes as agree on their columns."""
        probes: list[tuple[dict[Column, int], list[tuple[int, int]]]] = []
        for p, pos in enumerate(self.positions):
            counts = [range(int(self.n_choices[g][c])) for g, c in pos.deps]
            for v, combo in enumerate(itertools.product(*counts)):
                assign = dict(zip(pos.deps, combo))
                probe = next(
                    (pr for pr in probes if all(pr[0].get(k, x) == x for k, x in assign.items())), None
                )
                if probe is None:
                    probe = ({}, [])
                    probes.append(probe)
                probe[0].update(assign)
                probe[1].append((p, int(self._gather.offsets[p]) + v))
        return probes

    def variant_ops(self, r: int) -> list[Op]:
        """The op of every variant at resolution ``r``, by variant id (computed once per ``r``)."""
        if r not in self._ops:
            base = self.from_archs([self.space.max_arch(r)])
            ops: list[Op | None] = [None] * self.n_variants
            for assign, shows in self._probes:
                member = base.take(np.array([0]))
                for (g, c), value in assign.items():
                    member.genes[g][0, c] = value
                run = self.spec.ops(self.archs(member)[0])
                for p, vid in shows:
                    ops[vid] = run[p]
            self._ops[r] = [op for op in ops if op is not None]
            assert len(self._ops[r]) == self.n_variants
        return self._ops[r]

    # --- exact minima ---------------------------------------------------------------------------

    @cached_property
    def free_columns(self) -> set[Column]:
        """Gene columns only one op position depends on (and no depth gene): given the others,
        each takes its cheapest value on its own, which makes exact minima cheap."""
        seen = [col for p in self.positions for col in p.deps]
        return {col for col in seen if seen.count(col) == 1 and col[0] != "d"}

    def combinations(self, columns: Sequence[Column]) -> Population:
        """Every combination of ``columns``' choices (the other columns at 0, resolution index 0)."""
        shape = tuple(int(self.n_choices[n][c]) for n, c in columns)
        grid = np.indices(shape, dtype=np.int64).reshape(len(columns), int(np.prod(shape))).T
        genes = {n: np.zeros((len(grid), len(k)), dtype=np.int64) for n, k in self.n_choices.items()}
        for j, (n, c) in enumerate(columns):
            genes[n][:, c] = grid[:, j]
        return Population(genes, np.zeros(len(grid), dtype=np.int64))

    def shared_columns(self) -> list[Column]:
        """The gene columns that are neither free nor depths (widths: what fixes the other ops)."""
        return [
            (n, c)
            for n, k in self.n_choices.items()
            if n != "d"
            for c in range(len(k))
            if (n, c) not in self.free_columns
        ]

    def cheapest_free(self, pop: Population, values: np.ndarray) -> None:
        """Set every free column of ``pop`` (in place) to the choice whose op variant is cheapest in
        ``values`` [V] given the member's other columns."""
        gather = self._gather
        stack = self._stack(pop)
        for p, pos in enumerate(self.positions):
            free = [j for j, col in enumerate(pos.deps) if col in self.free_columns]
            if not free:
                continue
            fixed = [j for j in range(len(pos.deps)) if j not in free]
            base = gather.offsets[p] + (stack[:, gather.cols[p, fixed]] * gather.strides[p, fixed]).sum(
                axis=1
            )
            counts = [int(self.n_choices[pos.deps[j][0]][pos.deps[j][1]]) for j in free]
            combos = np.array(list(itertools.product(*(range(c) for c in counts))), dtype=np.int64)
            best = values[base[:, None] + combos @ gather.strides[p, free]].argmin(axis=1)
            for j, column in zip(free, combos[best].T):
                name, c = pos.deps[j]
                pop.genes[name][:, c] = column
