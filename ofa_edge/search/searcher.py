"""The search's Python API: a supernet, its devices' tables and a predictor in; subnets out.

``SubnetSearch(supernet, spec, {device: table}, predictor)`` precomputes every cost once, then ``search``
answers one set of budgets (≈0.1-1 s) and ``pareto`` a list of latency budgets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ofa_edge.accuracy.predictor import AccuracyPredictor
from ofa_edge.errors import ConfigError
from ofa_edge.lut.table import LatencyTable, LutError
from ofa_edge.search.costs import (
    CostModel,
    count_costs,
    energy_cost,
    file_size_cost,
    latency_cost,
    peak_memory_cost,
)
from ofa_edge.search.evolution import Constraint, EvolutionSearch, InfeasibleError, Objective, SearchOutcome
from ofa_edge.search.genomes import genome_for
from ofa_edge.search.population import Genome, Population
from ofa_edge.supernet.family import FamilySpec

OBJECTIVES = ("accuracy", "macs")


def predictor_objective(predictor: AccuracyPredictor, genome: Genome) -> Objective:
    """Predicted accuracy of a population: one batched encode (the family's) and numpy MLP pass."""
    features, mlp = genome.features(predictor.encoder), predictor.frozen()
    return lambda pop, active: mlp(features(pop, active))


@dataclass
class ParetoPoint:
    """One budget of a sweep: the search's outcome, or why the budget is unreachable."""

    budget_ms: float
    outcome: SearchOutcome | None
    infeasible: InfeasibleError | None = None


class SubnetSearch:
    """Constraint-aware search over one supernet for one or several devices."""

    def __init__(
        self,
        supernet: str,
        spec: FamilySpec,
        tables: Mapping[str, LatencyTable] | None = None,
        predictor: AccuracyPredictor | None = None,
        *,
        objective: str = "accuracy",
        **evolution: Any,
    ) -> None:
        """``spec`` is the supernet's layout (``get_supernet_info(id).spec``); ``tables``
        maps each device name (what budgets and results are keyed by) to its latency table, which
        must describe the supernet; ``evolution`` overrides :class:`EvolutionSearch`'s settings."""
        if objective not in OBJECTIVES:
            raise ConfigError(f"objective {objective!r} is not one of {list(OBJECTIVES)}")
        if objective == "accuracy" and predictor is None:
            raise ConfigError(
                "the accuracy objective needs a predictor", hint="pass one, or objective='macs'"
            )
        tables = dict(tables or {})
        for name, t in tables.items():
            if t.supernet.id != supernet or t.spec != spec:
                raise LutError(f"the latency table of {name} is for {t.supernet.id!r}, not {supernet!r}")
        resolutions = set(spec.space.resolutions)
        sources = [(f"the table of {n}", t.resolutions) for n, t in tables.items()]
        if predictor is not None and objective == "accuracy":
            sources.append(("the predictor", list(predictor.encoder.resolutions)))
        for _, res in sources:
            resolutions &= set(res)
        if not resolutions:
            raise ConfigError(
                "no resolution is shared by the supernet, "
                + ", ".join(f"{what} ({sorted(res)})" for what, res in sources),
                hint="build the tables at the predictor's resolutions (lut build --resolutions)",
            )
        self.supernet = supernet
        self.genome = genome_for(supernet, spec, sorted(resolutions))
        self.latency = {n: latency_cost(n, t, self.genome) for n, t in tables.items()}
        self.energy = {n: energy_cost(n, t, self.genome) for n, t in tables.items() if t.has_energy}
        self.macs, self.params = count_costs(spec, self.genome)
        self.file_size = file_size_cost(self.params)
        self.peak_memory = peak_memory_cost(spec, self.genome)
        self.objective = objective
        if predictor is not None and objective == "accuracy":
            fitness = predictor_objective(predictor, self.genome)
        else:
            fitness = lambda pop, active: self.macs.evaluate(pop, active).astype(np.float64)  # noqa: E731
        costs = [*self.latency.values(), *self.energy.values(), self.macs, self.params, self.file_size]
        costs.append(self.peak_memory)
        self.engine = EvolutionSearch(self.genome, costs, fitness, **evolution)

    def constraints(
        self,
        latency_ms: dict[str, float] | None = None,
        *,
        macs: float | None = None,
        params: float | None = None,
        file_bytes: float | None = None,
        peak_bytes: float | None = None,
        energy_mj: dict[str, float] | None = None,
    ) -> list[Constraint]:
        """Budgets as constraints: latency (ms) and energy per inference (mJ, tables with
        energy) per device name, MACs, params, bytes."""
        out = []
        for device, budget in (latency_ms or {}).items():
            if device not in self.latency:
                raise ConfigError(
                    f"no latency table for device {device!r}", hint=f"tables: {list(self.latency)}"
                )
            out.append(Constraint(self.latency[device], float(budget)))
        for device, budget in (energy_mj or {}).items():
            if device not in self.energy:
                raise ConfigError(
                    f"no table with energy per op for device {device!r} (with energy: {list(self.energy)})",
                    hint="build its table on the device where it has power rails (a Jetson's INA3221)",
                )
            out.append(Constraint(self.energy[device], float(budget)))
        for cost, limit in (
            (self.macs, macs),
            (self.params, params),
            (self.file_size, file_bytes),
            (self.peak_memory, peak_bytes),
        ):
            if limit is not None:
                out.append(Constraint(cost, float(limit)))
        return out

    def search(self, constraints: Sequence[Constraint], *, seed: int = 0, top: int = 1) -> SearchOutcome:
        """The ``top`` best distinct subnets meeting every constraint (raises InfeasibleError)."""
        return self.engine.run(constraints, seed=seed, top=top)

    def pareto(
        self, device: str, budgets_ms: Sequence[float], others: Sequence[Constraint] = (), *, seed: int = 0
    ) -> list[ParetoPoint]:
        """One search per latency budget on ``device`` (same seed), other constraints fixed.

        A subnet found for a tighter budget meets every looser one too, so where a search at a
        looser budget stalls below it, that budget keeps the tighter find: the front never drops.
        """
        found: dict[float, ParetoPoint] = {}
        best: SearchOutcome | None = None
        for budget in sorted(set(budgets_ms)):
            cons = [*self.constraints({device: budget}), *others]
            try:
                outcome = self.search(cons, seed=seed)
            except InfeasibleError as err:
                found[budget] = ParetoPoint(budget, None, err)
                continue
            if best is None or outcome.best.score >= best.best.score:
                best = outcome
            found[budget] = ParetoPoint(budget, best)
        return [found[b] for b in budgets_ms]

    def minimum(self, cost: CostModel) -> float:
        """The exact smallest value of ``cost`` over the searchable subnets."""
        return cost.minimum(self.genome)[0]

    def latency_range(self, device: str) -> tuple[float, float]:
        """Predicted latency (ms) on ``device``: the exact minimum, and the largest subnet's at the
        slowest searchable resolution (the span budgets are swept over)."""
        cost = self.latency[device]
        largest = self.genome.largest()
        return self.minimum(cost), float(cost.evaluate(largest, self.genome.active(largest.d)).max())

    def random_feasible(
        self, constraints: Sequence[Constraint], n: int, *, seed: int = 0, max_draws: int = 1_000_000
    ) -> tuple[Population, np.ndarray]:
        """``n`` uniformly random subnets meeting every constraint, and their scores (the
        baseline the search must beat); fewer if ``max_draws`` uniform draws do not find them."""
        rng = np.random.default_rng(seed)
        found, total, drawn = [], 0, 0
        while total < n and drawn < max_draws:
            cand = self.genome.random(10 * n, rng)
            drawn += len(cand)
            ok = np.flatnonzero(self.engine.feasible(cand, constraints))
            found.append(cand.take(ok))
            total += len(ok)
        pop = Population.concat(found).take(np.arange(min(n, total)))
        return pop, self.engine.objective(pop, self.genome.active(pop.d))
