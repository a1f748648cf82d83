"""Rank correlation, the one behind every reported Spearman (latency tables, accuracy predictor).

One definition, so two fidelity numbers that print the same name also mean the same thing:
tied values share their average rank (as scipy.stats.spearmanr ranks them), and a correlation
that is undefined (fewer than two points, or a series without any spread) is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def average_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``; each group of equal values gets the mean of its ranks."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    ordered = v[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts_group) - 1
    first = np.flatnonzero(starts_group)  # 0-based position where each group starts ...
    last = np.r_[first[1:], len(v)] - 1  # ... and ends
    ranks = np.empty(len(v))
    ranks[order] = ((first + last) / 2 + 1)[group]
    return ranks


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation of paired ``x`` and ``y``: Pearson's on their average ranks."""
    rx, ry = average_ranks(x), average_ranks(y)
    if len(rx) != len(ry):
        raise ValueError(f"spearman: {len(rx)} x values but {len(ry)} y values")
    if len(rx) < 2:
        return float("nan")
    rx -= rx.mean()
    ry -= ry.mean()
    denom = float(np.sqrt((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum()) / denom if denom > 0 else float("nan")
