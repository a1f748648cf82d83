"""Constraint-aware evolutionary search (OFA's scheme), vectorized over the whole population.

Each generation keeps the ``parents`` best members, then makes ``mutation_ratio`` of the new
population by mutating random parents and the rest by crossing two (OFA: population 100,
500 generations, 25 parents, half mutations). A child that breaks a budget is redrawn, all
failed children of a generation together and ``DRAWS`` candidates each per round, for up to
``RETRIES`` rounds, then replaced by its parent (OFA redraws forever, which hangs on tight
budgets). Budgets below what any subnet can reach are refused at once with the exact minimum
(:class:`InfeasibleError`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ofa_edge.errors import InfeasibleError
from ofa_edge.search.costs import CostKey, CostModel
from ofa_edge.search.population import Genome, Population

RETRIES = 10
DRAWS = 4
SEED_ROUNDS = 20

#: Fitness of a population (higher is better), given its active-slot mask.
Objective = Callable[[Population, np.ndarray], np.ndarray]


def format_value(value: float, unit: str) -> str:
    """A cost for messages: ms, MB for bytes, millions for counts."""
    if unit == "ms":
        return f"{value:.3f} ms"
    if unit == "bytes":
        return f"{value / 1e6:.3f} MB"
    return f"{value / 1e6:.3f}M {unit}"


@dataclass(frozen=True)
class Constraint:
    """A budget on one cost: ``cost.evaluate(...) <= budget``."""

    cost: CostModel
    budget: float

    def describe(self) -> dict[str, Any]:
        return {
            "metric": self.cost.key.metric,
            "device": self.cost.key.device,
            "unit": self.cost.unit,
            "budget": self.budget,
        }


@dataclass
class Candidate:
    """One found subnet with its objective and every cost the searcher knows."""

    arch: Any  # the family's arch config
    score: float
    costs: dict[CostKey, float]

    def labelled_costs(self) -> dict[str, float]:
        """The costs under their display labels ("latency on NAME", "macs", ...), for files."""
        return {key.label: value for key, value in self.costs.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch.to_dict(), "score": self.score, "costs": self.labelled_costs()}


@dataclass
class SearchOutcome:
    """The best distinct subnets of one search (best first) and how long it took."""

    candidates: list[Candidate]
    constraints: list[Constraint]
    seconds: float
    generations: int
    seed: int

    @property
    def best(self) -> Candidate:
        return self.candidates[0]


class EvolutionSearch:
    """OFA's evolutionary search over a genome, with any set of cost models and budgets."""

    def __init__(
        self,
        genome: Genome,
        costs: Sequence[CostModel],
        objective: Objective,
        *,
        population: int = 100,
        generations: int = 500,
        parents: int = 25,
        mutation_ratio: float = 0.5,
        arch_mutate_prob: float = 0.1,
        resolution_mutate_prob: float = 0.5,
    ) -> None:
        self.genome = genome
        self.costs = list(costs)
        self.objective = objective
        self.population = population
        self.generations = generations
        self.parents = parents
        self.n_mutate = round(mutation_ratio * population)
        self.arch_prob = arch_mutate_prob
        self.res_prob = resolution_mutate_prob

    # --- budgets ------------------------------------------------------------------------------

    def check_reachable(self, constraints: Sequence[Constraint]) -> None:
        """Raise :class:`InfeasibleError` naming every budget below its exact minimum (instant)."""
        short = []
        for c in constraints:
            value, pop = c.cost.minimum(self.genome)
            if value > c.budget:
                short.append((c, value, pop.archs(self.genome)[0]))
        if short:
            c, value, arch = short[0]
            more = "; ".join(f"{s.cost.key.label}: {format_value(v, s.cost.unit)}" for s, v, _ in short[1:])
            raise InfeasibleError(
                f"{c.cost.key.label}: budget {format_value(c.budget, c.cost.unit)} is below the smallest "
                f"reachable {format_value(value, c.cost.unit)} (at r={arch.r})"
                + (f"; also below the minimum: {more}" if more else ""),
                hint=f"raise the {c.cost.key.label} budget to at least {format_value(value, c.cost.unit)}",
                minimums=[{**s.describe(), "minimum": v, "arch": a.to_dict()} for s, v, a in short],
            )

    def feasible(self, pop: Population, constraints: Sequence[Constraint]) -> np.ndarray:
        """bool [P]: which members meet every constraint."""
        active = self.genome.active(pop.d)
        ok = np.ones(len(pop), dtype=bool)
        for c in constraints:
            ok &= c.cost.evaluate(pop, active) <= c.budget
        return ok

    def _initial(self, constraints: Sequence[Constraint], rng: np.random.Generator) -> Population:
        """``population`` feasible members: uniform and small-biased samples, then the cheapest
        subnet of each constraint and mutations of whatever is feasible, so tiny feasible
        regions fill up instead of hanging rejection sampling."""
        n = self.population
        found: list[Population] = []
        total = 0
        for _ in range(SEED_ROUNDS):
            bias = np.where(np.arange(4 * n) < 2 * n, 1.0, 1.0 + rng.exponential(4.0, 4 * n))
            cand = self.genome.random(4 * n, rng, bias)
            ok = self.feasible(cand, constraints)
            found.append(cand.take(np.flatnonzero(ok)))
            total += int(ok.sum())
            if total >= n:
                break
            if total == 0:
                cheapest = Population.concat([c.cost.minimum(self.genome)[1] for c in constraints])
                ok = self.feasible(cheapest, constraints)
                found.append(cheapest.take(np.flatnonzero(ok)))
                total += int(ok.sum())
            if total:
                pool = Population.concat(found)
                kids = self.genome.mutate(pool.take(rng.integers(len(pool), size=4 * n)), rng, 0.2, 0.5)
                ok = self.feasible(kids, constraints)
                found.append(kids.take(np.flatnonzero(ok)))
                total += int(ok.sum())
        if total == 0:
            raise InfeasibleError(
                "no subnet meets all the budgets together ("
                + ", ".join(
                    f"{c.cost.key.label} <= {format_value(c.budget, c.cost.unit)}" for c in constraints
                )
                + "), though each alone is reachable",
                hint="relax one of them",
                minimums=[],
            )
        pool = Population.concat(found)
        if len(pool) < n:
            pool = Population.concat([pool, pool.take(rng.integers(len(pool), size=n - len(pool)))])
        return pool.take(np.arange(n))

    def _children(
        self,
        make: Callable[[np.ndarray], Population],
        fallback: Population,
        constraints: Sequence[Constraint],
    ) -> Population:
        """Children ``make(i)`` for every slot i, each redrawn until it meets the budgets.

        A failed slot gets ``DRAWS`` candidates per round and keeps its first feasible one: the
        same outcome as redrawing one at a time (OFA), in a few vectorized rounds. A slot still
        failing after ``RETRIES`` rounds keeps its parent.
        """
        kids = make(np.arange(len(fallback)))
        ok = self.feasible(kids, constraints)
        for _ in range(RETRIES):
            bad = np.flatnonzero(~ok)
            if not bad.size:
                return kids
            redo = make(np.repeat(bad, DRAWS))
            good = self.feasible(redo, constraints).reshape(len(bad), DRAWS)
            hit = good.any(axis=1)
            first = np.arange(len(bad)) * DRAWS + good.argmax(axis=1)
            kids.put(bad[hit], redo.take(first[hit]))
            ok[bad[hit]] = True
        bad = np.flatnonzero(~ok)
        kids.put(bad, fallback.take(bad))
        return kids

    # --- the search -----------------------------------------------------------------------------

    def run(self, constraints: Sequence[Constraint], *, seed: int = 0, top: int = 1) -> SearchOutcome:
        """Best ``top`` distinct subnets meeting every constraint (deterministic per ``seed``)."""
        start = time.perf_counter()
        self.check_reachable(constraints)
        rng = np.random.default_rng(seed)
        pop = self._initial(constraints, rng)
        fitness = self._score(pop)
        for _ in range(self.generations):
            order = np.argsort(-fitness, kind="stable")[: self.parents]
            parents = pop.take(order)
            kids = self._offspring(parents, constraints, rng)
            pop = Population.concat([parents, kids])
            fitness = np.concatenate([fitness[order], self._score(kids)])
        return SearchOutcome(
            self._top(pop, fitness, top),
            list(constraints),
            time.perf_counter() - start,
            self.generations,
            seed,
        )

    def _offspring(
        self, parents: Population, constraints: Sequence[Constraint], rng: np.random.Generator
    ) -> Population:
        """One generation's children: mutations of random parents, then crossovers of two."""
        n_par, n_mut = len(parents), self.n_mutate
        pm = rng.integers(n_par, size=n_mut)
        p1 = rng.integers(n_par, size=self.population - n_mut)
        p2 = rng.integers(n_par, size=self.population - n_mut)
        mutated = self._children(
            lambda i: self.genome.mutate(parents.take(pm[i]), rng, self.arch_prob, self.res_prob),
            parents.take(pm),
            constraints,
        )
        crossed = self._children(
            lambda i: parents.take(p1[i]).crossover(parents.take(p2[i]), rng), parents.take(p1), constraints
        )
        return Population.concat([mutated, crossed])

    def _genes(self, pop: Population) -> np.ndarray:
        """One opaque key per member (its canonical genes' bytes): equal keys, same network.

        1-D byte keys make ``np.unique`` 10x faster than ``unique(axis=0)`` on the gene rows.
        """
        rows = self.genome.canonical(pop).rows().astype(np.int8)
        return np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1]))).ravel()

    def _score(self, pop: Population) -> np.ndarray:
        """The objective of every member, computed once per distinct subnet (late generations
        hold about 3 copies of each, so this saves most predictor work)."""
        _, first, inverse = np.unique(self._genes(pop), return_index=True, return_inverse=True)
        distinct = pop.take(first)
        return self.objective(distinct, self.genome.active(distinct.d))[inverse]

    def _top(self, pop: Population, fitness: np.ndarray, top: int) -> list[Candidate]:
        order = np.argsort(-fitness, kind="stable")
        _, first = np.unique(self._genes(pop)[order], return_index=True)
        chosen = order[np.sort(first)][:top]
        best = self.genome.canonical(pop).take(chosen)
        active = self.genome.active(best.d)
        values = {c.key: c.evaluate(best, active) for c in self.costs}
        return [
            Candidate(arch, float(fitness[j]), {key: v[i].item() for key, v in values.items()})
            for i, (arch, j) in enumerate(zip(best.archs(self.genome), chosen))
        ]
