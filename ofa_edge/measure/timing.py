"""Drift-resistant timing on a device: every model measured relative to one reference model.

A shared or thermally limited device runs at a speed that moves by tens of percent, within
minutes and, on a shared host, within a second, more than the ±10 % a latency table aims for.
What the device's speed does not change is a model's time relative to a reference model timed
at the same moment. Two ways of timing the reference (``timing_of`` a session says which):

- ``interleaved`` (the agent): each model runs in bursts of a few runs alternating with bursts
  of the reference, and its ratio is the median over bursts of its time divided by the geometric
  mean of the reference bursts around it, so speed changes slower than a burst cancel.
- ``bracketed`` (``benchmark_model`` on phones without Python, one model per run of the tool):
  the reference is timed as a model of its own first, after every ``ref_every`` models and last,
  and each model's time is divided by the geometric mean of the reference times just before and
  just after it; a speed that moves steadily between the two cancels out.

Ratios are multiplied by one reference level (the table's, so entries measured in different
sessions agree) to give ms. Several rounds in different orders, reduced by their median, then
remove one-off disturbances.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofa_edge.devices.agent import BenchResult
from ofa_edge.lut.table import LatencyTable, LutError

REF_PREFIX = "ofa-edge-reference-"


@dataclass(frozen=True)
class Timed:
    """One model's normalized latency: its time over the reference's at the same moment."""

    name: str
    ratio: float  # model time / geometric mean of the reference times around it
    result: BenchResult  # the raw measurement


def timing_of(session: Any) -> str:
    """How ``session`` times models against the reference: "interleaved" or "bracketed"."""
    return "interleaved" if getattr(session, "interleaves", False) else "bracketed"


def table_timing(table: LatencyTable) -> str:
    """How a table's entries were timed (tables before the field was added: "bracketed")."""
    return "bracketed" if table.reference is None else table.reference.timing


def _schedule(models: Sequence[Path], ref_every: int, rng: random.Random) -> list[Path | None]:
    """Models in a random order with ``None`` (the reference) first, after every ``ref_every``
    and last, so that every model sits between two reference timings."""
    order = list(models)
    rng.shuffle(order)
    plan: list[Path | None] = []
    for i, model in enumerate(order):
        if i % ref_every == 0:
            plan.append(None)
        plan.append(model)
    plan.append(None)
    return plan


def timed_round(
    session: Any,
    models: Sequence[Path],
    reference: Path,
    *,
    ref_every: int = 4,
    seed: int = 0,
    on_timed: Callable[[Timed], None] | None = None,
    **bench_kwargs: Any,
) -> tuple[list[Timed], list[float], Any]:
    """Time ``models`` once each, in a shuffled order, against the reference.

    Returns the normalized results (also streamed to ``on_timed`` as soon as each is known, so a
    caller can save each at once), the reference's median times, and the session's bench report.
    ``ref_every`` spaces the reference slots of bracketed timing.
    """
    names = [Path(m).name for m in models]
    if len(set(names)) != len(names) or any(n.startswith(REF_PREFIX) for n in names):
        raise LutError("models to time need distinct file names (and not the reference's prefix)")
    timed: list[Timed] = []
    refs: list[float] = []

    def checked(result: BenchResult) -> None:
        if result.error is not None:
            raise LutError(f"{session.spec.name}: measuring {result.name} failed: {result.error}")

    def emit(result: BenchResult, ratio: float) -> None:
        item = Timed(result.name, ratio, result)
        timed.append(item)
        if on_timed is not None:
            on_timed(item)

    if timing_of(session) == "interleaved":
        order = list(models)
        random.Random(seed).shuffle(order)

        def arrived(result: BenchResult) -> None:
            checked(result)
            if result.ratio is None or result.ref_median_ms is None:
                raise LutError(f"{session.spec.name}: {result.name} was not timed against the reference")
            refs.append(result.ref_median_ms)
            emit(result, result.ratio)

        report = session.bench(order, reference=reference, on_result=arrived, **bench_kwargs)
        return timed, refs, report

    plan = _schedule(models, ref_every, random.Random(seed))
    waiting: list[BenchResult] = []  # models timed since the last reference
    with tempfile.TemporaryDirectory(prefix="ofa-edge-ref-") as tmp:
        paths = []
        for i, model in enumerate(plan):
            if model is None:  # a name per slot (the agent reports results by file name), one file
                slot = Path(tmp) / f"{REF_PREFIX}{i:04d}{reference.suffix}"
                _link_or_copy(reference, slot)
                paths.append(slot)
            else:
                paths.append(Path(model))

        def slotted(result: BenchResult) -> None:
            checked(result)
            if not result.name.startswith(REF_PREFIX):
                waiting.append(result)
                return
            assert result.median_ms is not None
            refs.append(result.median_ms)
            if len(refs) < 2:
                return
            around = math.sqrt(refs[-2] * refs[-1])
            for held in waiting:
                assert held.median_ms is not None
                emit(held, held.median_ms / around)
            waiting.clear()

        report = session.bench(paths, on_result=slotted, **bench_kwargs)
    return timed, refs, report


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy where links cannot be made)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def timed_rounds(
    session: Any,
    models: Sequence[Path],
    reference: Path,
    *,
    rounds: int = 3,
    ref_ms: float | None = None,
    ref_every: int = 4,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    **bench_kwargs: Any,
) -> tuple[dict[str, float], float]:
    """Latency (ms) of each model: median over ``rounds`` of its ratio, times the reference level.

    ``ref_ms`` is the reference level to express results in (a table's); by default the median
    of this call's reference times. Returns (model name -> ms, reference level used).
    """
    ratios: dict[str, list[float]] = {Path(m).name: [] for m in models}
    all_refs: list[float] = []
    done = 0
    for k in range(rounds):

        def tick(item: Timed) -> None:
            nonlocal done
            ratios[item.name].append(item.ratio)
            done += 1
            if progress is not None:
                progress(done, rounds * len(models))

        _, refs, _ = timed_round(
            session, models, reference, ref_every=ref_every, seed=seed + k, on_timed=tick, **bench_kwargs
        )
        all_refs += refs
    level = ref_ms if ref_ms is not None else statistics.median(all_refs)
    return {name: statistics.median(r) * level for name, r in ratios.items()}, level


def reference_model(
    spec: Any, resolution: int, fmt: str = "onnx", precision: str = "fp32"
) -> tuple[Path, str]:
    """The reference for a table of ``spec``: its smallest subnet at ``resolution``, cached.

    Returns the file and a description to record in the table.
    """
    import hashlib

    from ofa_edge.files import copy_atomic
    from ofa_edge.lut.micro import tool_versions
    from ofa_edge.lut.validate import export_subnets
    from ofa_edge.supernet.registry import cache_dir

    arch = spec.space.min_arch(resolution)
    describe = f"min subnet @ {resolution}px ({fmt} {precision})"
    ident = f"reference|{spec.width_mult}|{spec.n_classes}|{spec.space.to_dict()}|{arch.to_json()}"
    ident += f"|{fmt}|{precision}|{tool_versions(fmt, precision)}"
    path = cache_dir() / "micro" / f"reference-{hashlib.sha256(ident.encode()).hexdigest()[:20]}.{fmt}"
    if not path.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            (made,) = export_subnets(spec, [arch], Path(tmp), fmt, precision)
            path.parent.mkdir(parents=True, exist_ok=True)
            copy_atomic(made, path)  # never a part of it in the cache, whatever the filesystems
    return path, describe


def table_reference(table: LatencyTable) -> Path:
    """The reference model file of a table built with one (see ``LatencyTable.reference``)."""
    if table.reference is None:
        raise LutError(
            "the latency table has no reference timing (built by an older ofa-edge)",
            hint="rebuild it with `ofa-edge lut build` into a new --out",
        )
    return reference_model(table.spec, table.reference.resolution, table.model_format, table.precision)[0]
