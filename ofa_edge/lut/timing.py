"""Drift-resistant timing on a device: a reference model interleaved with the models measured.

A shared or thermally limited device runs at a speed that drifts by tens of percent within
minutes, more than the ±10 % a latency table aims for. Every ``ref_every`` models the same
reference model is timed again (and once more at the end), and each model's time is divided by
the geometric mean of the reference times just before and just after it: that ratio is what the
device's speed does not change, and a speed that moves steadily between the two cancels out.
Ratios are multiplied by one reference level (the table's, so entries measured in different
sessions agree) to give ms.
Several rounds in different orders, reduced by their median, then remove one-off disturbances.
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
    """One model's normalized latency: the model's time over the reference time before it."""

    name: str
    ratio: float  # model time / geometric mean of the reference times around it
    result: BenchResult  # the raw measurement


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
    """Time ``models`` once each, in a shuffled order, against the interleaved reference.

    Returns the normalized results (also streamed to ``on_timed`` as soon as the reference after
    them is timed, so a caller can save each at once), the reference's median times, and the
    session's bench report.
    """
    names = [Path(m).name for m in models]
    if len(set(names)) != len(names) or any(n.startswith(REF_PREFIX) for n in names):
        raise LutError("models to time need distinct file names (and not the reference's prefix)")
    plan = _schedule(models, ref_every, random.Random(seed))
    refs: list[float] = []
    timed: list[Timed] = []
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

        def arrived(result: BenchResult) -> None:
            if result.error is not None:
                raise LutError(f"{session.spec.name}: measuring {result.name} failed: {result.error}")
            assert result.median_ms is not None
            if not result.name.startswith(REF_PREFIX):
                waiting.append(result)
                return
            refs.append(result.median_ms)
            if len(refs) < 2:
                return
            around = math.sqrt(refs[-2] * refs[-1])
            for held in waiting:
                assert held.median_ms is not None
                item = Timed(held.name, held.median_ms / around, held)
                timed.append(item)
                if on_timed is not None:
                    on_timed(item)
            waiting.clear()

        report = session.bench(paths, on_result=arrived, **bench_kwargs)
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
            shutil.move(made, path)
    return path, describe


def table_reference(table: LatencyTable) -> Path:
    """The reference model file of a table built with one (see ``LatencyTable.reference``)."""
    if table.reference is None:
        raise LutError(
            "the latency table has no reference timing (built by an older ofa-edge)",
            hint="rebuild it with `ofa-edge lut build` into a new --out",
        )
    resolution = table.reference["resolution"]
    return reference_model(table.spec, resolution, table.model_format, table.precision)[0]
