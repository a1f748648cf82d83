"""The one Spearman: average ranks for ties, NaN when undefined, used by every fidelity report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ofa_edge.stats import average_ranks, spearman


def test_tied_values_share_their_average_rank() -> None:
    assert average_ranks([30, 10, 20, 10, 10]).tolist() == [5.0, 2.0, 4.0, 2.0, 2.0]
    assert average_ranks(np.array([0.5, 0.5])).tolist() == [1.5, 1.5]


def test_spearman_on_tied_data_matches_the_hand_computed_value() -> None:
    # x ranks 1, 2.5, 2.5, 4 and y ranks 1, 3, 2, 4: deviations from 2.5 are (-1.5, 0, 0, 1.5) and
    # (-1.5, 0.5, -0.5, 1.5), so rho = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10). Ranking ties by their
    # order instead (x as 1, 2, 3, 4) would give 0.8.
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10), abs=1e-12)
    # Ties on both sides: ranks (1.5, 1.5, 3.5, 3.5) and (1, 2.5, 2.5, 4), deviations (-1, -1, 1, 1)
    # and (-1.5, 0, 0, 1.5): rho = 3 / sqrt(4 * 4.5) = 1 / sqrt(2).
    assert spearman([5, 5, 7, 7], [1, 2, 2, 3]) == pytest.approx(1 / math.sqrt(2), abs=1e-12)


def test_spearman_extremes_and_undefined_cases() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([4.0, 3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert spearman([1, 4, 9], [1.0, 1.1, 50.0]) == pytest.approx(1.0), "ranks, not values"
    assert math.isnan(spearman([1, 2, 3], [7, 7, 7])), "no spread: undefined"
    assert math.isnan(spearman([1], [2])) and math.isnan(spearman([], []))
    with pytest.raises(ValueError, match="3 x values but 2 y values"):
        spearman([1, 2, 3], [1, 2])


def test_every_fidelity_report_uses_it() -> None:
    from ofa_edge.accuracy import predictor
    from ofa_edge.lut import validate

    assert predictor.spearman is spearman and validate.spearman is spearman
