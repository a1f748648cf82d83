"""Reference-normalized timing: device drift cancels, order is shuffled, every model is timed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from ofa_edge.devices.session import BenchReport, BenchResult
from ofa_edge.lut.table import LutError
from ofa_edge.measure.timing import REF_PREFIX, timed_round, timed_rounds


class DriftingDevice:
    """A test double of a device session whose speed halves gradually while it measures.

    Each model has a true cost; every measurement takes ``cost * slowdown``, and the slowdown
    grows with each model measured, as on a device heating up or shared with other work.
    """

    def __init__(self, costs: dict[str, float], ref_cost: float) -> None:
        self.costs, self.ref_cost = costs, ref_cost
        self.spec = SimpleNamespace(name="drifting")
        self.slowdown = 1.0
        self.order: list[str] = []

    def bench(self, paths: list[Path], on_result: Callable[[BenchResult], None], **_: Any) -> BenchReport:
        results = []
        for p in paths:
            cost = self.ref_cost if p.name.startswith(REF_PREFIX) else self.costs[p.name]
            assert p.is_file(), "every model handed to the device exists"
            result = BenchResult(p.name, median_ms=cost * self.slowdown, runs=10)
            self.order.append(p.name)
            self.slowdown *= 1.05
            on_result(result)
            results.append(result)
        return BenchReport(results)


@pytest.fixture
def models(tmp_path: Path) -> list[Path]:
    paths = []
    for i in range(10):
        p = tmp_path / f"m{i}.onnx"
        p.write_bytes(b"model %d" % i)
        paths.append(p)
    (tmp_path / "ref.onnx").write_bytes(b"reference")
    return paths


def test_drift_cancels_against_the_reference(models: list[Path], tmp_path: Path) -> None:
    costs = {p.name: 1.0 + i for i, p in enumerate(models)}
    device = DriftingDevice(costs, ref_cost=2.0)
    ms, level = timed_rounds(device, models, tmp_path / "ref.onnx", rounds=2, ref_every=1, ref_ms=4.0)
    assert level == 4.0
    # Each model sits between two reference timings one 5 % step before and after it: their
    # geometric mean is the speed the model ran at, so the drift cancels exactly.
    for name, cost in costs.items():
        assert ms[name] == pytest.approx(cost * 4.0 / 2.0)
    raw_spread = device.slowdown
    assert raw_spread > 5, "the double really drifted a lot over the run"


def test_rounds_are_shuffled_and_references_interleaved(models: list[Path], tmp_path: Path) -> None:
    device = DriftingDevice({p.name: 1.0 for p in models}, ref_cost=1.0)
    timed, refs, _ = timed_round(device, models, tmp_path / "ref.onnx", ref_every=4, seed=1)
    assert len(timed) == 10 and len(refs) == 4  # before models 1, 5 and 9, and after the last
    assert device.order[0].startswith(REF_PREFIX) and device.order[-1].startswith(REF_PREFIX)
    names = [n for n in device.order if not n.startswith(REF_PREFIX)]
    assert sorted(names) == sorted(p.name for p in models) and names != [p.name for p in models]


class InterleavingDevice(DriftingDevice):
    """A test double of the agent's session: it times each model against the reference itself
    and reports their ratio (``measure_interleaved`` is tested in test_agent_local)."""

    interleaves = True

    def bench(
        self, paths: list[Path], on_result: Callable[[BenchResult], None], reference: Path, **_: Any
    ) -> BenchReport:
        assert reference.is_file() and not any(p.name.startswith(REF_PREFIX) for p in paths)
        results = []
        for p in paths:
            ref = self.ref_cost * self.slowdown
            result = BenchResult(
                p.name,
                self.costs[p.name] * self.slowdown,
                ratio=self.costs[p.name] / self.ref_cost,
                ref_median_ms=ref,
            )
            self.order.append(p.name)
            self.slowdown *= 1.05
            on_result(result)
            results.append(result)
        return BenchReport(results)


def test_an_interleaving_session_reports_the_ratios_itself(models: list[Path], tmp_path: Path) -> None:
    costs = {p.name: 1.0 + i for i, p in enumerate(models)}
    device = InterleavingDevice(costs, ref_cost=2.0)
    timed, refs, _ = timed_round(device, models, tmp_path / "ref.onnx", seed=3)
    assert len(timed) == len(refs) == 10 and sorted(device.order) == sorted(costs)
    assert device.order != [p.name for p in models], "shuffled"
    assert refs == pytest.approx([2.0 * 1.05**i for i in range(10)])  # the reference beside each model
    ms, level = timed_rounds(device, models, tmp_path / "ref.onnx", rounds=2, ref_ms=4.0)
    assert level == 4.0 and ms == pytest.approx({n: c * 2.0 for n, c in costs.items()})


def test_duplicate_names_are_refused(models: list[Path], tmp_path: Path) -> None:
    device = DriftingDevice({p.name: 1.0 for p in models}, ref_cost=1.0)
    with pytest.raises(LutError, match="distinct file names"):
        timed_round(device, [models[0], models[0]], tmp_path / "ref.onnx")


def test_calibration_fits_the_terms_the_data_show_and_falls_back_when_unsafe() -> None:
    from ofa_edge.lut.validate import fit_calibration

    rng = np.random.default_rng(0)
    n_ops = rng.integers(14, 27, 30).astype(float)
    sums = rng.uniform(0.2, 0.7, 30) + 0.012 * n_ops  # each op's measurement paid 12 µs of overhead
    measured = 0.98 * sums - 0.012 * n_ops + 0.02
    assert fit_calibration(sums, n_ops, measured)[0].terms == pytest.approx(
        {"a": 0.98, "b": 0.02, "c": -0.012, "q": 0.0}
    )
    # Whole networks that slow as they grow: the curvature, with or without the op count.
    curved = measured + 0.3 * sums**2
    assert fit_calibration(sums, n_ops, curved)[0].terms == pytest.approx(
        {"a": 0.98, "b": 0.02, "c": -0.012, "q": 0.3}
    )
    bent = 0.5 * sums + 0.4 * sums**2 + 0.1
    assert fit_calibration(sums, n_ops, bent)[0].terms == pytest.approx(
        {"a": 0.5, "b": 0.1, "c": 0.0, "q": 0.4}
    )
    # Too few subnets for the extra terms (or all with the same count): the line.
    line = 1.1 * sums + 0.5
    assert fit_calibration(sums[:10], n_ops[:10], line[:10])[0].terms == pytest.approx(
        {"a": 1.1, "b": 0.5, "c": 0.0, "q": 0.0}
    )
    assert fit_calibration(sums, 0 * n_ops + 20, line)[0].terms == pytest.approx(
        {"a": 1.1, "b": 0.5, "c": 0.0, "q": 0.0}
    )
    # Terms that explain nothing: leave-one-out error keeps the line, not fitted noise.
    noisy = line * (1 + rng.normal(0, 0.03, 30))
    fitted, _ = fit_calibration(sums, rng.integers(14, 27, 30), noisy)
    assert fitted.c == 0.0 and fitted.q == 0.0
    # Three noisy points: the scale alone, the median ratio.
    few, score = fit_calibration(sums[:3], n_ops[:3], sums[:3] * np.array([1.0, 1.1, 1.2]))
    assert few.terms == pytest.approx({"a": 1.1, "b": 0.0, "c": 0.0, "q": 0.0}) and score is None
    # A fit that would predict a negative latency for the smallest subnets is not used.
    floor = np.array([[0.05, 10.0]])
    safe, _ = fit_calibration(sums, n_ops, measured, floor)
    assert safe.c == 0.0 and safe.a * 0.05 + safe.q * 0.05**2 + safe.b > 0
    # Nor one that would fall as subnets grow (up to twice the largest bound): the exact
    # minimum of the search relies on the latency growing with the op sum.
    falling = 1.2 * sums - 0.2 * sums**2 + 0.3  # grows up to 3.0, twice the sums' largest is 2.0
    assert fit_calibration(sums, n_ops, falling)[0].q == pytest.approx(-0.2)
    assert fit_calibration(sums, n_ops, falling, np.array([[1.6, 26.0]]))[0].q == 0.0


def test_reference_slots_share_one_file(models: list[Path], tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []

    class Recorder(DriftingDevice):
        def bench(
            self, paths: list[Path], on_result: Callable[[BenchResult], None], **kw: Any
        ) -> BenchReport:
            seen.extend((p.stat().st_ino, p.stat().st_nlink) for p in paths if p.name.startswith(REF_PREFIX))
            return super().bench(paths, on_result, **kw)

    timed_round(Recorder({p.name: 1.0 for p in models}, 1.0), models, tmp_path / "ref.onnx", ref_every=2)
    reference = (tmp_path / "ref.onnx").stat()
    assert len(seen) == 6 and {ino for ino, _ in seen} == {reference.st_ino}  # links, not copies


def test_relevel_moves_every_entry_to_the_median_reference() -> None:
    from ofa_edge.lut.build import relevel
    from ofa_edge.lut.table import (
        Calibration,
        DeviceRecord,
        Entry,
        LatencyTable,
        Reference,
        Runtime,
        SupernetRef,
    )
    from ofa_edge.supernet.spec import MBv3Spec

    shared = Entry(2.0, 1.8, 2.2)
    table = LatencyTable(SupernetRef("x", MBv3Spec()), DeviceRecord("pi"), Runtime("onnxruntime"))
    table.entries = {24: {"a": shared, "b": Entry(1.0)}, 32: {"a": shared}}
    # An older table's reference (no timings_ms): its level is its one timing.
    table.reference = Reference.from_dict({"model": "m", "resolution": 24, "median_ms": 1.0, "measured": ""})
    table.calibration = Calibration(a=0.9, b=0.5, c=0.01, q=0.24, subnets=8)
    relevel(table, [1.2, 1.3, 1.1, 1.4])
    assert table.reference.median_ms == pytest.approx(1.2)
    assert table.reference.timings_ms == [1.0, 1.2, 1.3, 1.1, 1.4]
    assert (shared.median_ms, shared.p10_ms, shared.p90_ms) == pytest.approx((2.4, 2.16, 2.64))  # once
    assert table.entries[24]["b"].median_ms == pytest.approx(1.2)
    # b and c are in ms, q in 1/ms; how it was fitted stays.
    assert table.calibration.terms == pytest.approx({"a": 0.9, "b": 0.6, "c": 0.012, "q": 0.2})
    assert table.calibration.subnets == 8
