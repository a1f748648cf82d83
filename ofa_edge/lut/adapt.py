"""A table for a new device from another device's table and a few whole subnets measured on it.

Building a table measures every op (minutes to hours on a small board); adapting one measures
``samples`` whole subnets on the new device and corrects the source table with them, as HELP and
LitePred do with their learned adapters, here with a model small enough for 10-20 samples:

1. Each subnet's source prediction (op sum through the source's calibration) is scaled by one
   common factor ``g``, the median of measured / predicted: a uniform speed change. The
   whole-network calibration is the source's, rescaled by ``g``, or one fitted on the samples
   themselves (as ``lut validate`` fits a built table's) when its leave-one-out error is clearly
   lower: a half-core cgroup or another CPU stretches whole networks in its own way.
2. Measured latencies are mapped back through the scaled calibration to op-sum units, and each
   op type (``op_type``: the block's kernel size and SE, or the fixed stem and head) gets its own
   factor, fitted by ridge regression on relative errors shrunk toward ``g``. The shrinkage is
   chosen by leave-one-out error over a grid that includes "the common factor alone", so few or
   noisy samples keep the uniform correction and many samples buy per-type detail; a weaker
   shrinkage must beat the stronger ones clearly (``SIMPLER_WITHIN``) to be kept.

The adapted table's entries are the source's times its types' factors; its calibration is the
source's, rescaled; its reference level is the new device's own (timed with the subnets), so
later measurements there (``lut validate``, ``push --verify``) compare with it as with a built
table. ``adapted`` in the table says where it came from and how well it fits.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ofa_edge.devices.backend import Backend
from ofa_edge.devices.session import MeasuringSession, runtime_version
from ofa_edge.devices.spec import model_format
from ofa_edge.errors import LutError
from ofa_edge.lut.keys import subnet_ops
from ofa_edge.lut.table import (
    Adaptation,
    Calibration,
    DeviceRecord,
    Entry,
    LatencyTable,
    Reference,
    Runtime,
    apply_calibration,
    now,
)
from ofa_edge.lut.validate import (
    Fidelity,
    calibration_archs,
    calibration_bounds,
    fidelity,
    fit_calibration,
    random_archs,
    time_models,
)
from ofa_edge.measure.models import export_subnets
from ofa_edge.measure.reference import reference_model
from ofa_edge.supernet.family import Arch

#: Ridge strengths tried (relative-error units); ``math.inf`` is the common factor alone.
RIDGES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, math.inf)
#: Fewest samples a fit of per-type factors is tried on (fewer: the common factor alone).
MIN_TYPED_FIT = 6
#: A weaker shrinkage is kept only if its leave-one-out error is this much (relative) below the
#: stronger ones': on two devices of one CPU (the SSH test bed adapted to this machine) the
#: per-type fit's 0.8 % leave-one-out error became 3.5 % on held-out subnets, the common factor's 2.2 %.
SIMPLER_WITHIN = 0.25


def op_type(key: str) -> str:
    """The op type an adaptation gives one factor: blocks by kernel size and SE ("k5-se"),
    every other op (stem, head, pooling, classifier) as "fixed"."""
    fields = dict(part.split(":", 1) for part in key.split("-")[1:] if ":" in part)
    if not key.startswith("expanded_conv") or "kernel" not in fields:
        return "fixed"
    return f"k{fields['kernel']}" + ("-se" if fields.get("se") == "1" else "")


@dataclass(frozen=True)
class AdaptFit:
    """An adaptation's numbers: the common factor, each type's factor, the ridge kept, and the
    leave-one-out relative error (%) on the fitted subnets."""

    scale: float
    type_scales: dict[str, float]
    ridge: float | None
    loo_mape_pct: float
    calibration: Calibration
    recalibrated: bool = False  # the calibration was fitted on the samples, not rescaled

    @property
    def calibration_kind(self) -> str:
        """How the calibration was had, as tables and reports name it: "refitted" or "scaled"."""
        return "refitted" if self.recalibrated else "scaled"


def _type_sums(table: LatencyTable, arch: Arch, types: list[str]) -> np.ndarray:
    """The source table's op sum of ``arch`` split by op type (``types`` order)."""
    section = table.entries[arch.r]
    sums = dict.fromkeys(types, 0.0)
    for op in subnet_ops(table.spec, arch):
        sums[op_type(op.key)] += section[op.key].median_ms
    return np.array([sums[t] for t in types])


def _op_sum_of(cal: Calibration, latency: np.ndarray, n_ops: np.ndarray) -> np.ndarray:
    """The op sums ``s`` with ``cal(s, n_ops) == latency``: measurements in table units."""
    rest = latency - cal.c * n_ops - cal.b
    if cal.q == 0:
        return rest / cal.a
    # q s^2 + a s - rest = 0: the root that tends to rest / a as q -> 0.
    return 2 * rest / (cal.a + np.sqrt(np.maximum(cal.a * cal.a + 4 * cal.q * rest, 0.0)))


def fit_adaptation(
    sums: np.ndarray,
    n_ops: np.ndarray,
    measured: np.ndarray,
    types: list[str],
    source: Calibration,
    per_type: bool = True,
    refit_bounds: np.ndarray | None = None,
) -> AdaptFit:
    """Fit the correction from ``sums`` (subnets x types: the source table's op sums per type),
    their op counts and their ``measured`` latencies on the new device (module docstring);
    without ``per_type``, the common factor alone (devices of one hardware class). With
    ``refit_bounds`` (the source's :func:`calibration_bounds`), a calibration fitted on the
    samples replaces the rescaled source's where its leave-one-out error is clearly lower."""
    sums, n_ops, measured = (np.asarray(v, float) for v in (sums, n_ops, measured))
    base = apply_calibration(source, sums.sum(1), n_ops)
    ratios = measured / base
    g = float(np.median(ratios))
    cal, recalibrated = source.scaled(g), False
    if refit_bounds is not None:
        # The source's calibration rescaled, or one fitted here on the rescaled op sums: the
        # whole-network overheads of another device need not scale with its ops.
        others = np.array([np.median(np.delete(ratios, i)) for i in range(len(ratios))])
        scaled_loo = float(np.mean(np.abs(others * base / measured - 1)))
        bounds = np.asarray(refit_bounds, float) * [g, 1.0]
        fresh, fresh_loo = fit_calibration(g * sums.sum(1), n_ops, measured, bounds)
        if fresh_loo is not None and fresh_loo * (1 + SIMPLER_WITHIN) < scaled_loo:
            cal, recalibrated = fresh, True
    z = _op_sum_of(cal, measured, n_ops)  # what each subnet's op sum should have been here
    a = sums / z[:, None]  # relative features: a_i . u is subnet i's relative correction
    t = (z - g * sums.sum(1)) / z
    fits = [(float(np.mean(np.abs(t))), math.inf, np.zeros(len(types)))]  # the common factor alone
    for ridge in sorted(RIDGES, reverse=True) if per_type and len(z) >= MIN_TYPED_FIT else ():
        if math.isinf(ridge):
            continue
        inverse = np.linalg.inv(a.T @ a + ridge * np.eye(len(types)))
        u = inverse @ a.T @ t
        hat = np.einsum("ij,jk,ik->i", a, inverse, a)
        loo = float(np.mean(np.abs((t - a @ u) / np.maximum(1 - hat, 1e-9))))
        if np.all(g + u > 0.1 * g):
            fits.append((loo, ridge, u))
    # The simplest fit (strongest shrinkage) whose error is within SIMPLER_WITHIN of the best:
    # per-type detail must earn its parameters, as a one-standard-error rule would have it.
    least = min(f[0] for f in fits)
    best = next(f for f in fits if f[0] <= least * (1 + SIMPLER_WITHIN))
    loo, ridge, u = best
    return AdaptFit(
        scale=g,
        type_scales={typ: float(g + du) for typ, du in zip(types, u)},
        ridge=None if math.isinf(ridge) else ridge,
        loo_mape_pct=100 * loo,
        calibration=cal,
        recalibrated=recalibrated,
    )


def adapted_table(
    source: LatencyTable, fit: AdaptFit, device: DeviceRecord, runtime: Runtime, backend: Backend
) -> LatencyTable:
    """The source table with every entry multiplied by its type's factor, for ``device`` (whose
    ``backend`` may differ from the source's: the correction is what carries the table over)."""

    def scaled(entry: Entry, factor: float) -> Entry:
        def times(v: float | None) -> float | None:
            return None if v is None else v * factor

        return dataclasses.replace(
            entry,
            median_ms=entry.median_ms * factor,
            p10_ms=times(entry.p10_ms),
            p90_ms=times(entry.p90_ms),
            passes_ms=None if entry.passes_ms is None else [v * factor for v in entry.passes_ms],
            measured="adapted",
            raw_median_ms=None,
        )

    entries = {
        r: {key: scaled(e, fit.type_scales.get(op_type(key), fit.scale)) for key, e in section.items()}
        for r, section in source.entries.items()
    }
    return LatencyTable(
        supernet=source.supernet,
        device=device,
        runtime=runtime,
        precision=source.precision,
        threads=source.threads,
        backend=backend,
        entries=entries,
    )


@dataclass(frozen=True)
class AdaptReport:
    """What ``adapt`` measured and wrote; ``held_out`` fidelity only when subnets were held out."""

    table: LatencyTable
    path: Path
    fit: AdaptFit
    samples: int
    device_seconds: float
    held_out: Fidelity | None
    scale_only_held_out: Fidelity | None
    note: str | None = None  # a caveat for the user (another CPU architecture)

    def to_dict(self) -> dict[str, Any]:
        """The report as ``lut adapt --json`` prints it."""
        return {
            "table": str(self.path),
            "source_device": self.table.adapted.source_device if self.table.adapted else None,
            "samples": self.samples,
            "device_seconds": self.device_seconds,
            "scale": self.fit.scale,
            "type_scales": self.fit.type_scales,
            "ridge": self.fit.ridge,
            "loo_mape_pct": self.fit.loo_mape_pct,
            "calibration": self.fit.calibration_kind,
            "held_out": None if self.held_out is None else self.held_out.to_dict(),
            "scale_only_held_out": None
            if self.scale_only_held_out is None
            else self.scale_only_held_out.to_dict(),
            "note": self.note,
        }


def adapt(
    session: MeasuringSession,
    source_path: Path,
    out: Path,
    *,
    samples: int = 20,
    held_out: int = 0,
    rounds: int = 3,
    seed: int = 0,
    per_type: bool = True,
    work: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AdaptReport:
    """Measure ``samples`` subnets (and ``held_out`` more, only to report on) on ``session``'s
    device, fit the correction of the table at ``source_path`` (``per_type``: or the common
    factor alone) and write the adapted table to ``out``. Fails in one line when the source
    cannot serve this device (another model format)."""
    source = LatencyTable.load(source_path)
    device = session.spec
    if model_format(device.runtime) != source.model_format:
        raise LutError(
            f"{source_path} was measured with {source.runtime.name}, device {device.name!r} runs "
            f"{device.runtime} (another model format)",
            hint="adapt a table of a device with the same runtime, or build one: ofa-edge lut build",
        )
    if samples < 2:
        raise LutError(f"lut adapt needs at least 2 samples, got {samples}", hint="use --samples 10 or more")
    fingerprint = session.fingerprint()
    fit_archs = calibration_archs(source, samples, samples, seed)
    check_archs = random_archs(source, held_out, seed + 1) if held_out else []
    archs = fit_archs + check_archs
    ref_r = source.reference.resolution if source.reference else min(source.resolutions)
    reference, describe = reference_model(source.spec, ref_r, source.model_format, source.precision)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        paths = export_subnets(source.spec, archs, Path(tmp), source.model_format, source.precision)
        started = time.monotonic()  # device time: the exports above are this host's
        ms, level = time_models(
            session, source, paths, reference, None, rounds=rounds, seed=seed, progress=progress
        )
        device_seconds = time.monotonic() - started
    measured = np.array([ms[p.name] for p in paths])
    types = sorted({op_type(k) for section in source.entries.values() for k in section})
    sums = np.array([_type_sums(source, a, types) for a in archs])
    n_ops = np.array([len(subnet_ops(source.spec, a)) for a in archs], dtype=float)
    src_cal = source.calibration or Calibration(1.0, 0.0)
    n = len(fit_archs)
    fit = fit_adaptation(
        sums[:n], n_ops[:n], measured[:n], types, src_cal, per_type, calibration_bounds(source)
    )
    table = adapted_table(
        source,
        fit,
        DeviceRecord(device.name, fingerprint),
        Runtime(device.runtime, runtime_version(fingerprint, device.runtime)),
        device.backend_for(device.runtime),
    )
    table.reference = Reference(describe, ref_r, level, now(), [level], "interleaved")
    table.calibration = dataclasses.replace(
        fit.calibration, subnets=n, fitted=now(), seed=seed, rounds=rounds
    )
    table.adapted = Adaptation(
        source_device=source.device.name,
        source_created=source.created,
        source_fingerprint=source.device.fingerprint,
        samples=n,
        scale=fit.scale,
        type_scales=fit.type_scales,
        ridge=fit.ridge,
        loo_mape_pct=fit.loo_mape_pct,
        fitted=now(),
        calibration=fit.calibration_kind,
    )
    table.save(out)
    held, scale_only = None, None
    if check_archs:
        predicted = np.array([table.predict(a) for a in check_archs])
        uniform = apply_calibration(fit.calibration, fit.scale * sums[n:].sum(1), n_ops[n:])
        held, scale_only = fidelity(predicted, measured[n:]), fidelity(uniform, measured[n:])
    return AdaptReport(
        table, out, fit, n, device_seconds, held, scale_only, architecture_note(source, fingerprint)
    )


def architecture_note(source: LatencyTable, fingerprint: dict[str, Any]) -> str | None:
    """A caveat when the source was measured on another CPU architecture, where adapted tables
    ranked subnets clearly worse than a build (``benchmarks/RESULTS.md``: x86 to the emulated Pi)."""
    theirs, ours = source.device.fingerprint.get("arch"), fingerprint.get("arch")
    if not theirs or not ours or theirs == ours:
        return None
    return (
        f"note: {source.device.name}'s table was measured on {theirs}, this device is {ours}; across "
        "architectures adapted tables rank subnets worse than a build (ofa-edge lut build)"
    )
