"""Building a device's latency table: every distinct op measured on the device, resumably.

Every distinct op is measured (an op shared by several resolutions is written under each) in
batches through the device's session, in several passes: each pass measures every op again, in
other batches and another order, and an entry is the median of its passes. One pass's values
move by several percent with the device's state, and a search seeks out the ops measured low.
Every result is written to the table file as it arrives
(atomically), so an interrupted build (device dropped, Ctrl-C, host killed) loses nothing, and
running the same command again measures only what is missing. A batch during which the device
throttled or changed clocks is measured again, and its entries say so (``remeasured``). Every
op is timed relative to a reference model (``timing``: interleaved with it, or between timings of
it), so the device's drift during the build does not end up in the table. The table's reference level is
the median of all its reference timings, so one unlucky timing cannot shift every entry.
"""

from __future__ import annotations

import functools
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ofa_edge.devices.session import MeasuringSession, runtime_version
from ofa_edge.devices.spec import DeviceSpec, model_format
from ofa_edge.lut.keys import Op, enumerate_ops
from ofa_edge.lut.micro import export_micro_models
from ofa_edge.lut.table import (
    PASSES,
    DeviceRecord,
    Entry,
    LatencyTable,
    LutError,
    Reference,
    Runtime,
    SupernetRef,
    check_backend,
    now,
    table_timing,
)
from ofa_edge.measure.reference import reference_model
from ofa_edge.measure.timing import Timed, Timing, chosen_timing, timed_round

#: ``progress(done, total)`` after each measured op.
BuildProgress = Callable[[int, int], None]


def disturbed(before: dict[str, Any], after: dict[str, Any], clock_tolerance: float = 0.15) -> bool:
    """Whether throttling appeared, Android's thermal status rose or CPU clocks moved during a
    batch (measure it again)."""
    heat = [(c.get("android_thermal") or {}).get("status", 0) for c in (before, after)]
    if heat[1] > heat[0]:
        return True
    for state in (before.get("throttle"), after.get("throttle")):
        if state and state.get("now"):
            return True
    if (before.get("throttle") or {}).get("raw") != (after.get("throttle") or {}).get("raw"):
        return True
    b, a = before.get("cpu_mhz") or {}, after.get("cpu_mhz") or {}
    return any(cpu in a and abs(a[cpu] - mhz) > clock_tolerance * mhz for cpu, mhz in b.items() if mhz)


def _compatible(table: LatencyTable, fresh: LatencyTable, out: Path, device: DeviceSpec) -> None:
    """Refuse to extend a table measured under other conditions."""
    for field in ("supernet", "runtime", "precision", "threads"):
        if getattr(table, field) != getattr(fresh, field):
            raise LutError(
                f"{out} was measured with {field}={getattr(table, field)!r}, "
                f"this build has {getattr(fresh, field)!r}",
                hint="use another --out, or delete the file to start over",
            )
    check_backend(table, device, str(out))
    if table.device.name != fresh.device.name:
        raise LutError(
            f"{out} belongs to device {table.device.name!r}, not {fresh.device.name!r}",
            hint="use another --out",
        )


def build_table(
    session: MeasuringSession,
    supernet: SupernetRef,
    resolutions: Sequence[int] | None,
    out: Path,
    *,
    precision: str = "fp32",
    threads: int | None = None,
    passes: int = PASSES,
    batch_size: int = 32,
    min_runs: int = 30,
    min_seconds: float = 0.1,
    progress: BuildProgress | None = None,
    exporting: BuildProgress | None = None,
    timing: Timing | None = None,
) -> LatencyTable:
    """Measure every op of ``supernet`` at ``resolutions`` (None: all of the supernet's) on
    ``session``'s device into ``out``, ``passes`` times (an existing table gains the passes it lacks).

    ``progress`` follows the measured ops, ``exporting`` the op models written first (only those
    not cached yet); ``timing`` is how ops are timed against the reference (None: the session's
    own way, ``ofa_edge.measure.timing.timing_of``)."""
    timing = chosen_timing(session, timing)
    spec = supernet.spec
    resolutions = spec.space.resolutions if resolutions is None else resolutions
    device = session.spec
    threads = threads or device.threads
    fingerprint = session.fingerprint()
    fresh = LatencyTable(
        supernet=supernet,
        device=DeviceRecord(device.name, fingerprint),
        runtime=Runtime(device.runtime, runtime_version(fingerprint, device.runtime)),
        precision=precision,
        threads=threads,
        backend=device.backend_for(device.runtime),
    )
    if out.exists():
        table = LatencyTable.load(out)
        _compatible(table, fresh, out, device)
        if table.reference is not None and table_timing(table) != timing:
            raise LutError(
                f"{out} was timed {table_timing(table)} with its reference, this build times {timing} "
                "(an older table?)",
                hint="use another --out, or delete the file to start over",
            )
    else:
        table = fresh
    where: dict[str, list[int]] = {}
    ops: dict[str, Op] = {}
    for r in resolutions:
        table.entries.setdefault(r, {})
        for op in enumerate_ops(spec, [r]):
            where.setdefault(op.key, []).append(r)
            ops.setdefault(op.key, op)
    # Ops measured for another resolution of this table are reused, not measured again.
    for key, rs in where.items():
        entry = next((s[key] for s in table.entries.values() if key in s), None)
        if entry is not None:
            for r in rs:
                table.entries[r].setdefault(key, entry)

    def entry_of(key: str) -> Entry | None:
        return table.entries[where[key][0]].get(key)

    def passes_of(key: str) -> int:
        entry = entry_of(key)
        return 0 if entry is None else len(entry.passes)

    need = [ops[k] for k in where if passes_of(k) < passes]
    total = len(where) * passes
    count = sum(min(passes_of(k), passes) for k in where)
    if progress:
        progress(count, total)
    fmt = model_format(device.runtime)
    paths = export_micro_models(spec, need, fmt, precision, exporting)
    key_of = {paths[op.key].name: op.key for op in need}
    kwargs: dict[str, Any] = dict(threads=threads, min_runs=min_runs, min_seconds=min_seconds)
    if need and table.reference is None:
        r_ref = min(table.resolutions)
        reference, described = reference_model(spec, r_ref, fmt, precision)
        ref = session.bench([reference], **{**kwargs, "min_runs": 3 * min_runs}).results[0]
        if ref.error is not None or ref.median_ms is None:
            raise LutError(f"{device.name}: the reference model failed: {ref.error}")
        table.reference = Reference(described, r_ref, ref.median_ms, now(), [ref.median_ms], timing)
        table.save(out)
    elif need:
        assert table.reference is not None
        reference, _ = reference_model(spec, table.reference.resolution, fmt, precision)
    level = table.reference.median_ms if table.reference else 0.0

    def record(item: Timed, remeasured: bool) -> None:
        """Add this pass's value to the op's entry (a re-measured batch replaces its pass)."""
        nonlocal count
        result = item.result
        assert result.median_ms is not None
        key = key_of[result.name]
        old = entry_of(key)
        values = [] if old is None else old.passes
        if remeasured and old is not None:
            values.pop()
        values.append(item.ratio * level)
        # one energy per pass, as measured, where the device has power rails
        energies = list(old.passes_mj or [])[: len(values) - 1] if old else []
        energies += [] if result.energy_mj is None else [result.energy_mj]
        scale = values[-1] / result.median_ms  # raw ms -> ms at the reference's speed
        entry = Entry(
            statistics.median(values),
            None if result.p10_ms is None else result.p10_ms * scale,
            None if result.p90_ms is None else result.p90_ms * scale,
            result.runs + (old.samples if old else 0),
            now(),
            remeasured or (old.remeasured if old else False),
            result.median_ms,
            values,
            placement=None
            if result.placement is None or result.placement.whole
            else result.placement.to_dict(),
            energy_mj=statistics.median(energies) if len(energies) == len(values) else None,
            passes_mj=energies if len(energies) == len(values) else None,
        )
        for r in where[key]:
            table.entries[r][key] = entry
        table.save(out)
        if not remeasured:
            count += 1
            if progress:
                progress(count, total)

    timings: list[float] = []
    for n in range(passes):
        todo = [paths[k] for k in where if passes_of(k) <= n]
        random.Random(n).shuffle(todo)  # each pass in other batches and another order
        for i, start in enumerate(range(0, len(todo), batch_size)):
            batch = todo[start : start + batch_size]
            for again in (False, True):  # a batch the device disturbed is measured once more
                _, refs, report = timed_round(
                    session,
                    batch,
                    reference,
                    timing=timing,
                    seed=1000 * n + i,
                    on_timed=functools.partial(record, remeasured=again),
                    **kwargs,
                )
                if not again:
                    timings += refs
                if not disturbed(report.conditions_before, report.conditions_after):
                    break
    if timings:
        relevel(table, timings)
    table.save(out)
    return table


def relevel(table: LatencyTable, timings: Sequence[float]) -> None:
    """Add ``timings`` of the reference and move the table to the median of all its timings.

    Every entry is a ratio to the reference times the level, so scaling all entries (and the
    calibration's ms terms) by new level / old level keeps the table self-consistent.
    """
    assert table.reference is not None
    ref = table.reference
    all_timings = [*ref.timings_ms, *timings]
    level = statistics.median(all_timings)
    factor = level / ref.median_ms
    seen: set[int] = set()
    for section in table.entries.values():
        for entry in section.values():
            if id(entry) in seen:
                continue
            seen.add(id(entry))
            entry.median_ms *= factor
            entry.p10_ms = None if entry.p10_ms is None else entry.p10_ms * factor
            entry.p90_ms = None if entry.p90_ms is None else entry.p90_ms * factor
            entry.passes_ms = None if entry.passes_ms is None else [v * factor for v in entry.passes_ms]
    if table.calibration is not None:
        table.calibration = table.calibration.scaled(factor)
    table.reference = replace(ref, median_ms=level, timings_ms=all_timings)
