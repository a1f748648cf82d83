"""Drift-resistant timing on a device: every model measured relative to one reference model.

A shared or thermally limited device runs at a speed that moves by tens of percent, within
minutes and, on a shared host, within a second, more than the ±10 % a latency table aims for.
What the device's speed does not change is a model's time relative to a reference model timed
at the same moment. Two ways of timing the reference (``timing``: a session's own way is
``timing_of(session)``; a session that interleaves can also be timed bracketed, to compare):

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
from typing import Any, Literal

from ofa_edge.devices.session import BenchReport, BenchResult, MeasuringSession
from ofa_edge.errors import ConfigError, LutError

REF_PREFIX = "ofa-edge-reference-"
Timing = Literal["interleaved", "bracketed"]
TIMINGS: tuple[Timing, ...] = ("interleaved", "bracketed")


@dataclass(frozen=True)
class Timed:
    """One model's normalized latency: its time over the reference's at the same moment."""

    name: str
    ratio: float  # model time / geometric mean of the reference times around it
    result: BenchResult  # the raw measurement


def timing_of(session: MeasuringSession) -> Timing:
    """How ``session`` times models against the reference by itself: "interleaved" or "bracketed"."""
    return "interleaved" if getattr(session, "interleaves", False) else "bracketed"


def chosen_timing(session: MeasuringSession, timing: Timing | None) -> Timing:
    """``timing`` (None: the session's own), refused where the session cannot time that way:
    any session can be timed bracketed, only an interleaving one interleaved."""
    if timing is None:
        return timing_of(session)
    if timing not in TIMINGS or (timing == "interleaved" and timing_of(session) != "interleaved"):
        raise ConfigError(
            f"{session.spec.name}: cannot time {timing!r} against the reference",
            hint=f"this session times {timing_of(session)}",
        )
    return timing


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
    session: MeasuringSession,
    models: Sequence[Path],
    reference: Path,
    *,
    timing: Timing | None = None,
    ref_every: int = 4,
    seed: int = 0,
    on_timed: Callable[[Timed], None] | None = None,
    **bench_kwargs: Any,
) -> tuple[list[Timed], list[float], BenchReport]:
    """Time ``models`` once each, in a shuffled order, against the reference, ``timing`` its way
    (None: the session's own, :func:`timing_of`).

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

    if chosen_timing(session, timing) == "interleaved":
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
    session: MeasuringSession,
    models: Sequence[Path],
    reference: Path,
    *,
    timing: Timing | None = None,
    rounds: int = 3,
    ref_ms: float | None = None,
    ref_every: int = 4,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    **bench_kwargs: Any,
) -> tuple[dict[str, float], float]:
    """Latency (ms) of each model: median over ``rounds`` of its ratio, times the reference level.

    ``ref_ms`` is the reference level to express results in (a table's); by default the median
    of this call's reference times; ``timing`` as for :func:`timed_round`. Returns (model name
    -> ms, reference level used).
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
            session,
            models,
            reference,
            timing=timing,
            ref_every=ref_every,
            seed=seed + k,
            on_timed=tick,
            **bench_kwargs,
        )
        all_refs += refs
    level = ref_ms if ref_ms is not None else statistics.median(all_refs)
    return {name: statistics.median(r) * level for name, r in ratios.items()}, level
