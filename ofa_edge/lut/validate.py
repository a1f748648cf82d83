"""Checking a table against whole networks measured on the device, and calibrating it.

Summing per-op latencies misses fusion across ops, per-call overhead counted once per op, and
caches warmed by a lone op; the fix the field uses is a per-device linear calibration
``e2e = a * sum + b`` fitted on subnets measured whole. ofa-edge adds two terms, each kept only
where the measurements show it: the op count, ``c * n_ops``, since each op's own measurement
paid the runtime's per-call overhead that a whole network pays once (on sub-millisecond subnets
a large share), and a curvature, ``q * sum**2``, since whole networks slow beyond their ops' sum
as they grow (working sets outgrowing the caches). A search maximizing accuracy under a budget
picks exactly the subnets a plain line gets wrong: the smallest and the largest of a resolution.
The smallest subnet of every resolution and random subnets are exported and measured through the
device's session, the calibration is fitted on the first ones (at most 20) and the other random
ones are held out to report the share within +-10 %, the MAPE and the rank correlation, before
and after calibration.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ofa_edge.devices.session import MeasuringSession
from ofa_edge.errors import LutError
from ofa_edge.files import save_figure
from ofa_edge.lut.table import Calibration, LatencyTable, apply_calibration, check_backend, now
from ofa_edge.measure.models import export_subnets
from ofa_edge.measure.reference import reference_model
from ofa_edge.measure.timing import timed_rounds
from ofa_edge.stats import spearman
from ofa_edge.supernet.family import Arch, at_resolution

MAX_FIT = 20


@dataclass(frozen=True)
class Fidelity:
    """How well predictions match whole-network measurements."""

    within_10pct: float  # share of subnets, 0..1
    mape: float  # mean absolute percentage error, %
    spearman: float

    def to_dict(self) -> dict[str, float]:
        return {"within_10pct": self.within_10pct, "mape_pct": self.mape, "spearman": self.spearman}


@dataclass(frozen=True)
class SubnetPoint:
    """One subnet measured whole: its op sum and count in the table, and its measured latency."""

    arch: Arch
    op_sum_ms: float
    n_ops: int
    measured_ms: float
    fitted: bool  # among the calibration's subnets (else held out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_dict(),
            "op_sum_ms": self.op_sum_ms,
            "n_ops": self.n_ops,
            "measured_ms": self.measured_ms,
            "fitted": self.fitted,
        }


@dataclass(frozen=True)
class ValidationReport:
    """What :func:`validate` measured, the calibration it stored, and the fidelity on held-out
    subnets before and after it."""

    subnets: int
    fitted_on: int
    held_out: int
    rounds: int
    calibration: Calibration
    uncalibrated: Fidelity
    calibrated: Fidelity
    points: list[SubnetPoint]
    plot: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as ``lut validate --json`` prints it (the calibration's terms only)."""
        data: dict[str, Any] = {
            "subnets": self.subnets,
            "fitted_on": self.fitted_on,
            "held_out": self.held_out,
            "rounds": self.rounds,
            "calibration": self.calibration.terms,
            "uncalibrated": self.uncalibrated.to_dict(),
            "calibrated": self.calibrated.to_dict(),
            "points": [p.to_dict() for p in self.points],
        }
        if self.plot is not None:
            data["plot"] = str(self.plot)
        return data


def fidelity(predicted: np.ndarray, measured: np.ndarray) -> Fidelity:
    err = np.abs(predicted - measured) / measured
    return Fidelity(float(np.mean(err <= 0.10)), float(100 * err.mean()), spearman(predicted, measured))


MIN_LINEAR_FIT = 8
MIN_TERMS_FIT = 12  # subnets a fit with the op-count or the curvature term needs
TERMS = (("q", "c"), ("c",), ("q",), ())  # the forms compared: a * sum + [terms] + b


def fit_calibration(
    op_sums: np.ndarray,
    n_ops: np.ndarray,
    measured: np.ndarray,
    bounds: np.ndarray | None = None,
    forms: tuple[tuple[str, ...], ...] = TERMS,
) -> tuple[Calibration, float | None]:
    """The calibration and its mean relative leave-one-out error (``None``: the scale alone).

    Least-squares ``measured = a * op_sum + q * op_sum**2 + c * n_ops + b`` (a bare
    :class:`Calibration`: terms only), where the op-count term ``c`` and the curvature ``q`` are
    each kept only if the fit with them predicts the measured subnets better.

    Forms are compared by leave-one-out error on the measured subnets, so a term is kept only
    where the data show it (a fit to 20 noisy points can otherwise invent one, and a search
    then picks exactly the subnets it mispredicts). A fit must grow with the op sum from half
    the smallest to twice the largest of ``bounds`` (rows of (op_sum, n_ops): the smallest and
    largest subnets searches may reach; default: the fitted ones), so the search's exact minimum
    holds, and predict a positive latency at every ``bounds`` row. The extra terms need ``MIN_TERMS_FIT``
    subnets (the op count: different counts), the line ``MIN_LINEAR_FIT``; with fewer, or no
    usable fit, the scale alone (median ratio): a few noisy points must not yield a nonsense fit.
    ``forms`` limits the forms compared (``benchmarks/calibration_forms.py`` compares them).
    """
    op_sums, n_ops, measured = (np.asarray(v, float) for v in (op_sums, n_ops, measured))
    bounds = np.stack([op_sums, n_ops], axis=1) if bounds is None else np.asarray(bounds, float)
    columns = {"q": op_sums * op_sums, "c": n_ops}
    low = min(float(bounds[:, 0].min()), float(op_sums.min())) / 2
    high = 2 * max(float(bounds[:, 0].max()), float(op_sums.max()))
    best: tuple[float, Calibration] | None = None
    for terms in forms:
        if len(op_sums) < (MIN_TERMS_FIT if terms else MIN_LINEAR_FIT) or (
            "c" in terms and np.ptp(n_ops) == 0
        ):
            continue
        x = np.stack([op_sums, *(columns[t] for t in terms), np.ones_like(op_sums)], axis=1)
        coef, *_ = np.linalg.lstsq(x, measured, rcond=None)
        fitted = dict(zip(("a", *terms, "b"), map(float, coef)))
        cal = Calibration(fitted["a"], fitted["b"], fitted.get("c", 0.0), fitted.get("q", 0.0))
        grows = cal.a + 2 * cal.q * low > 0 and cal.a + 2 * cal.q * high > 0
        if not (grows and np.all(apply_calibration(cal, bounds[:, 0], bounds[:, 1]) > 0)):
            continue
        # Leave-one-out residuals of least squares: r_i / (1 - h_ii), h the hat matrix's diagonal.
        hat = np.einsum("ij,ji->i", x, np.linalg.pinv(x))
        loo = (measured - x @ coef) / np.maximum(1 - hat, 1e-9)
        error = float(np.mean(np.abs(loo) / measured))
        if best is None or error < best[0]:
            best = (error, cal)
    if best is not None:
        return best[1], best[0]
    return Calibration(a=float(np.median(measured / op_sums)), b=0.0), None


def random_archs(table: LatencyTable, n: int, seed: int) -> list[Arch]:
    """``n`` uniformly random subnets of the table's space, each at one of the table's resolutions."""
    space, rng = table.spec.space, random.Random(seed)
    return [at_resolution(space.sample(rng), rng.choice(table.resolutions)) for _ in range(n)]


def table_reference(table: LatencyTable) -> Path:
    """The reference model file of a table built with one (see ``LatencyTable.reference``)."""
    if table.reference is None:
        raise LutError(
            "the latency table has no reference timing (built by an older ofa-edge)",
            hint="rebuild it with `ofa-edge lut build` into a new --out",
        )
    return reference_model(table.spec, table.reference.resolution, table.model_format, table.precision)[0]


def time_models(
    session: MeasuringSession,
    table: LatencyTable,
    models: list[Path],
    reference: Path,
    level: float | None,
    *,
    rounds: int = 3,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, float], float]:
    """Latency (ms, by file name) of ``models`` timed in ``rounds`` shuffled rounds against
    ``reference`` (see ``ofa_edge.measure.timing``) with the table's threads, expressed at
    reference ``level`` (None: the device's level during this call); and the level used."""
    return timed_rounds(
        session,
        models,
        reference,
        rounds=rounds,
        ref_ms=level,
        seed=seed,
        progress=progress,
        threads=table.threads,
        min_runs=20,
        min_seconds=0.3,
    )


def timed_at_table_speed(
    session: MeasuringSession,
    table: LatencyTable,
    models: list[Path],
    *,
    rounds: int = 3,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Latency (ms, by file name) of ``models`` on the table's device at the table's reference
    speed: timed against the table's reference model, so the device's drift since the table was
    built cancels out and the result compares with the table's predictions."""
    check_backend(table, session.spec, f"the latency table of {table.device.name}")
    reference = table_reference(table)
    assert table.reference is not None  # table_reference refuses a table without one
    level = table.reference.median_ms
    return time_models(session, table, models, reference, level, rounds=rounds, seed=seed, progress=progress)[
        0
    ]


def measure_subnets(
    session: MeasuringSession,
    table: LatencyTable,
    archs: list[Arch],
    *,
    rounds: int = 3,
    seed: int = 0,
    work: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Whole-subnet latencies (ms) on the table's device, at the table's reference speed."""
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        paths = export_subnets(table.spec, archs, Path(tmp), table.model_format, table.precision)
        ms = timed_at_table_speed(session, table, paths, rounds=rounds, seed=seed, progress=progress)
    return np.array([ms[p.name] for p in paths])


def calibration_archs(table: LatencyTable, samples: int, fit: int, seed: int) -> list[Arch]:
    """The subnets ``validate`` measures: the smallest subnet of every resolution (where tight
    budgets send a search, below every random subnet), when they are at most a third of the
    ``fit`` ones, then random subnets; ``samples`` in all."""
    space = table.spec.space
    anchors = [space.min_arch(r) for r in table.resolutions] if 3 * len(table.resolutions) <= fit else []
    return anchors + random_archs(table, samples - len(anchors), seed)


def calibration_bounds(table: LatencyTable) -> np.ndarray:
    """(op_sum, n_ops) of the smallest and largest subnet of every resolution: the range a
    calibration must behave over (:func:`fit_calibration`)."""
    space = table.spec.space
    extremes = [f(r) for r in table.resolutions for f in (space.min_arch, space.max_arch)]
    return np.array([(table.op_sum(a), table.op_count(a)) for a in extremes], dtype=float)


def validate(
    session: MeasuringSession,
    table_path: Path,
    samples: int = 50,
    seed: int = 0,
    plot: Path | None = None,
    work: Path | None = None,
    *,
    rounds: int = 3,
    fit: int = MAX_FIT,
    progress: Callable[[int, int], None] | None = None,
) -> ValidationReport:
    """Measure ``samples`` subnets whole (:func:`calibration_archs`), store a calibration fitted
    on the first ``fit`` (at most half), and report fidelity on the other, random ones."""
    table = LatencyTable.load(table_path)
    n_fit = min(fit, max(2, samples // 2))
    archs = calibration_archs(table, samples, n_fit, seed)
    op_sums = np.array([table.op_sum(a) for a in archs])
    n_ops = np.array([table.op_count(a) for a in archs])
    measured = measure_subnets(session, table, archs, rounds=rounds, seed=seed, work=work, progress=progress)
    cal, _ = fit_calibration(op_sums[:n_fit], n_ops[:n_fit], measured[:n_fit], calibration_bounds(table))
    predicted = apply_calibration(cal, op_sums, n_ops)
    held = slice(n_fit, None) if samples > n_fit else slice(None)
    before = fidelity(op_sums[held], measured[held])
    after = fidelity(predicted[held], measured[held])
    table.calibration = replace(cal, subnets=n_fit, fitted=now(), seed=seed, rounds=rounds)
    table.save(table_path)
    if plot is not None:
        scatter_plot(op_sums, predicted, measured, n_fit, table.device.name, plot)
    return ValidationReport(
        subnets=samples,
        fitted_on=n_fit,
        held_out=len(measured[held]),
        rounds=rounds,
        calibration=table.calibration,
        uncalibrated=before,
        calibrated=after,
        points=[
            SubnetPoint(arch, float(s), int(n), float(m), i < n_fit)
            for i, (arch, s, n, m) in enumerate(zip(archs, op_sums, n_ops, measured))
        ],
        plot=plot,
    )


def scatter_plot(
    op_sums: np.ndarray, predicted: np.ndarray, measured: np.ndarray, n_fit: int, device: str, path: Path
) -> None:
    """Predicted vs measured latency, before and after calibration, with the +-10 % band."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5))  # no pyplot: no global backend or figure registry touched
    ax = fig.add_subplot()
    hi = float(max(measured.max(), op_sums.max(), predicted.max())) * 1.05
    line = np.linspace(0, hi, 50)
    ax.plot(line, line, "k-", lw=1, label="predicted = measured")
    ax.fill_between(line, line * 0.9, line * 1.1, color="0.85", label="±10 %")
    ax.scatter(measured, op_sums, s=14, c="tab:orange", label="op sum (uncalibrated)")
    ax.scatter(measured[n_fit:], predicted[n_fit:], s=14, c="tab:blue", label="calibrated, held out")
    ax.scatter(
        measured[:n_fit],
        predicted[:n_fit],
        s=14,
        marker="x",
        c="tab:blue",
        label="calibration subnets",
    )
    ax.set_xlabel("measured whole-network latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(f"{device}: latency table vs whole subnets")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
