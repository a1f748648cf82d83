"""Checking a table against whole networks measured on the device, and calibrating it.

Summing per-op latencies misses fusion across ops, per-call overhead counted once per op, and
caches warmed by a lone op; the fix the field uses is a per-device linear calibration
``e2e = a * sum + b`` fitted on subnets measured whole. ofa-edge adds the op count:
``e2e = a * sum + c * n_ops + b``, since each op's own measurement paid the runtime's per-call
overhead that a whole network pays once (on sub-millisecond subnets that overhead is a large
share, and a search maximizing accuracy under a budget picks exactly the subnets whose op count
a plain line gets wrong). Random subnets are exported, measured
through the device's session, the calibration is fitted on the first ones (at most 20) and the
rest are held out to report the share within +-10 %, the MAPE and the rank correlation, before
and after calibration.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ofa_edge.lut.table import LatencyTable, apply_calibration, now
from ofa_edge.lut.timing import table_reference, timed_rounds
from ofa_edge.supernet.space import ArchConfig
from ofa_edge.supernet.spec import MBv3Spec

MAX_FIT = 20


@dataclass(frozen=True)
class Fidelity:
    """How well predictions match whole-network measurements."""

    within_10pct: float  # share of subnets, 0..1
    mape: float  # mean absolute percentage error, %
    spearman: float

    def to_dict(self) -> dict[str, float]:
        return {"within_10pct": self.within_10pct, "mape_pct": self.mape, "spearman": self.spearman}


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Rank correlation (ties get their average rank)."""

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    if len(x) < 2:
        return float("nan")
    return float(np.corrcoef(ranks(np.asarray(x)), ranks(np.asarray(y)))[0, 1])


def fidelity(predicted: np.ndarray, measured: np.ndarray) -> Fidelity:
    err = np.abs(predicted - measured) / measured
    return Fidelity(float(np.mean(err <= 0.10)), float(100 * err.mean()), spearman(predicted, measured))


MIN_LINEAR_FIT = 8
MIN_OVERHEAD_FIT = 12


def fit_calibration(
    op_sums: np.ndarray, n_ops: np.ndarray, measured: np.ndarray, floor: np.ndarray | None = None
) -> dict[str, float]:
    """Least-squares ``measured = a * op_sum + c * n_ops + b`` (``{"a", "b", "c"}``), or the line
    ``a * op_sum + b`` (``c = 0``) when that predicts the measured subnets better.

    The two are compared by leave-one-out error on the measured subnets, so the op-count term is
    kept only where the data show it (a 3-parameter fit to 20 noisy points can otherwise invent
    one, and a search then picks exactly the subnets it mispredicts). A fit must have ``a > 0``
    and predict a positive latency at every ``floor`` point (rows of (op_sum, n_ops): the
    smallest subnets searches may reach; default: the fitted ones). The op-count term needs
    ``MIN_OVERHEAD_FIT`` subnets with different counts, the line ``MIN_LINEAR_FIT``; with fewer,
    or no usable fit, the scale alone (median ratio): a few noisy points must not yield a
    nonsense fit.
    """
    op_sums, n_ops, measured = (np.asarray(v, float) for v in (op_sums, n_ops, measured))
    floor = np.stack([op_sums, n_ops], axis=1) if floor is None else np.asarray(floor, float)
    ones = np.ones_like(op_sums)
    designs = []  # columns: op_sum, [n_ops,] 1
    if len(op_sums) >= MIN_OVERHEAD_FIT and np.ptp(n_ops) > 0:
        designs.append(np.stack([op_sums, n_ops, ones], axis=1))
    if len(op_sums) >= MIN_LINEAR_FIT:
        designs.append(np.stack([op_sums, ones], axis=1))
    best: tuple[float, dict[str, float]] | None = None
    for x in designs:
        coef, *_ = np.linalg.lstsq(x, measured, rcond=None)
        a, c, b = coef if len(coef) == 3 else (coef[0], 0.0, coef[1])
        if not (a > 0 and np.all(a * floor[:, 0] + c * floor[:, 1] + b > 0)):
            continue
        # Leave-one-out residuals of least squares: r_i / (1 - h_ii), h the hat matrix's diagonal.
        hat = np.einsum("ij,ji->i", x, np.linalg.pinv(x))
        loo = (measured - x @ coef) / np.maximum(1 - hat, 1e-9)
        error = float(np.mean(np.abs(loo) / measured))
        if best is None or error < best[0]:
            best = (error, {"a": float(a), "b": float(b), "c": float(c)})
    if best is not None:
        return best[1]
    return {"a": float(np.median(measured / op_sums)), "b": 0.0, "c": 0.0}


def random_archs(table: LatencyTable, n: int, seed: int) -> list[ArchConfig]:
    space, rng = table.spec.space, random.Random(seed)
    out = []
    for _ in range(n):
        a = space.sample(rng)
        out.append(ArchConfig(a.ks, a.e, a.d, rng.choice(table.resolutions)))
    return out


def export_subnets(
    spec: MBv3Spec, archs: list[ArchConfig], folder: Path, fmt: str = "onnx", precision: str = "fp32"
) -> list[Path]:
    """Whole subnets as model files to time (random weights: latency does not depend on them)."""
    import torch

    from ofa_edge.lut.micro import export_for_timing
    from ofa_edge.supernet.ofa_mbv3 import OFAMobileNetV3

    torch.manual_seed(0)
    net = OFAMobileNetV3(
        n_classes=spec.n_classes,
        width_mult=spec.width_mult,
        ks_list=spec.space.ks_list,
        expand_ratio_list=spec.space.expand_ratio_list,
        depth_list=spec.space.depth_list,
        resolutions=spec.space.resolutions,
    ).eval()
    paths = []
    for i, arch in enumerate(archs):
        net.set_arch(arch)
        shape = (1, 3, arch.r, arch.r)
        path = folder / f"subnet{i:03d}.{fmt}"
        paths.append(export_for_timing(net.get_active_subnet(), shape, fmt, precision, path))
    return paths


def measure_subnets(
    session: Any,
    table: LatencyTable,
    archs: list[ArchConfig],
    *,
    rounds: int = 3,
    seed: int = 0,
    work: Path | None = None,
    progress: Any = None,
) -> np.ndarray:
    """Whole-subnet latencies (ms) on the table's device, at the table's reference speed.

    Subnets are timed in ``rounds`` shuffled rounds against the table's reference model (see
    ``ofa_edge.lut.timing``), so the device's drift since the table was built cancels out.
    """
    import tempfile

    reference = table_reference(table)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        paths = export_subnets(table.spec, archs, Path(tmp), table.model_format, table.precision)
        ms, _ = timed_rounds(
            session,
            paths,
            reference,
            rounds=rounds,
            ref_ms=table.reference["median_ms"],
            seed=seed,
            progress=progress,
            threads=table.threads,
            min_runs=20,
            min_seconds=0.3,
        )
    return np.array([ms[p.name] for p in paths])


def validate(
    session: Any,
    table_path: Path,
    samples: int = 50,
    seed: int = 0,
    plot: Path | None = None,
    work: Path | None = None,
    *,
    rounds: int = 3,
    fit: int = MAX_FIT,
    progress: Any = None,
) -> dict[str, Any]:
    """Measure ``samples`` random subnets whole, store a calibration fitted on the first
    ``fit`` (at most half), and report fidelity on the others."""
    table = LatencyTable.load(table_path)
    archs = random_archs(table, samples, seed)
    op_sums = np.array([table.op_sum(a) for a in archs])
    n_ops = np.array([table.op_count(a) for a in archs])
    measured = measure_subnets(session, table, archs, rounds=rounds, seed=seed, work=work, progress=progress)
    n_fit = min(fit, max(2, samples // 2))
    smallest = [table.spec.space.min_arch(r) for r in table.resolutions]
    floor = [(table.op_sum(a), table.op_count(a)) for a in smallest]
    cal = fit_calibration(op_sums[:n_fit], n_ops[:n_fit], measured[:n_fit], floor)
    predicted = apply_calibration(cal, op_sums, n_ops)
    held = slice(n_fit, None) if samples > n_fit else slice(None)
    before = fidelity(op_sums[held], measured[held])
    after = fidelity(predicted[held], measured[held])
    table.calibration = {**cal, "subnets": n_fit, "fitted": now(), "seed": seed, "rounds": rounds}
    table.save(table_path)
    result = {
        "subnets": samples,
        "fitted_on": n_fit,
        "held_out": len(measured[held]),
        "rounds": rounds,
        "calibration": cal,
        "uncalibrated": before.to_dict(),
        "calibrated": after.to_dict(),
        "points": [
            {"arch": arch.to_dict(), "op_sum_ms": float(s), "n_ops": int(n), "measured_ms": float(m)}
            for arch, s, n, m in zip(archs, op_sums, n_ops, measured)
        ],
    }
    if plot is not None:
        scatter_plot(op_sums, predicted, measured, n_fit, table.device.get("name", "?"), plot)
        result["plot"] = str(plot)
    return result


def scatter_plot(
    op_sums: np.ndarray, predicted: np.ndarray, measured: np.ndarray, n_fit: int, device: str, path: Path
) -> None:
    """Predicted vs measured latency, before and after calibration, with the +-10 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
