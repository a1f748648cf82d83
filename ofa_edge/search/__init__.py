"""Constraint-aware, vectorized evolutionary search for the best subnet under device budgets."""

from ofa_edge.search.costs import CostModel, peak_activation_bytes
from ofa_edge.search.evolution import Candidate, Constraint, EvolutionSearch, InfeasibleError, SearchOutcome
from ofa_edge.search.genomes import genome_for
from ofa_edge.search.population import Genome, Population
from ofa_edge.search.searcher import ParetoPoint, SubnetSearch, predictor_objective

__all__ = [
    "Candidate",
    "Constraint",
    "CostModel",
    "EvolutionSearch",
    "Genome",
    "InfeasibleError",
    "ParetoPoint",
    "Population",
    "SearchOutcome",
    "SubnetSearch",
    "genome_for",
    "peak_activation_bytes",
    "predictor_objective",
]
