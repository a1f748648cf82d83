"""Building a table on the local device: complete, and resumed after an interruption without
losing or re-measuring anything."""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

import pytest

from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.spec import local_device
from ofa_edge.lut.build import build_table, disturbed
from ofa_edge.lut.keys import enumerate_ops
from ofa_edge.lut.table import LatencyTable, LutError, SupernetRef
from ofa_edge.supernet.space import SearchSpace
from ofa_edge.supernet.spec import MBv3Spec

SUPERNET = SupernetRef("tiny-test", MBv3Spec(0.35, 10, SearchSpace(resolutions=(32, 40))))
FAST = {"min_runs": 3, "min_seconds": 0.0, "batch_size": 16, "passes": 1}


def _keys(table: LatencyTable) -> dict[str, object]:
    return {k: e for section in table.entries.values() for k, e in section.items()}


def test_interrupted_build_resumes_without_remeasuring(tmp_path: Path) -> None:
    spec = dataclasses.replace(local_device(), workdir=str(tmp_path / "agent"))
    out = tmp_path / "lut.json"
    expected = {
        r: {op.key for op in enumerate_ops(MBv3Spec(0.35, 10, SearchSpace(resolutions=(32, 40))), [r])}
        for r in (32, 40)
    }

    def stop_after_ten(done: int, total: int) -> None:
        if done == 10:
            raise KeyboardInterrupt

    with AgentSession(spec) as session:
        with pytest.raises(KeyboardInterrupt):
            build_table(session, SUPERNET, [32, 40], out, progress=stop_after_ten, **FAST)
        partial_table = LatencyTable.load(out)
        partial = _keys(partial_table)
        assert len(partial) >= 10
        calls: list[int] = []
        table = build_table(
            session, SUPERNET, [32, 40], out, progress=lambda done, total: calls.append(done), **FAST
        )
    assert {r: set(s) for r, s in table.entries.items()} == expected
    unique = set().union(*expected.values())
    assert calls[0] == len(partial) and calls[-1] == len(unique)
    assert len(calls) == 1 + len(unique) - len(partial), "only the missing ops were measured"
    final = _keys(table)
    # Earlier measurements are kept, moved only by the common factor of the table's new level.
    assert partial_table.reference is not None and table.reference is not None
    factor = table.reference.median_ms / partial_table.reference.median_ms
    assert table.reference.median_ms == statistics.median(table.reference.timings_ms)
    for key, entry in partial.items():
        assert final[key].raw_median_ms == entry.raw_median_ms and final[key].measured == entry.measured
        assert final[key].median_ms == pytest.approx(entry.median_ms * factor, rel=1e-12)
    assert all(e.median_ms > 0 and e.samples >= 3 for e in final.values())
    assert table.device.fingerprint["cores"] and table.runtime.version


def test_more_passes_extend_a_table_and_an_interrupted_pass_resumes(tmp_path: Path) -> None:
    spec = dataclasses.replace(local_device(), workdir=str(tmp_path / "agent"))
    out = tmp_path / "lut.json"
    three = {**FAST, "passes": 3}
    with AgentSession(spec) as session:
        one = build_table(session, SUPERNET, [32], out, **FAST)
        n = len(_keys(one))

        def stop_in_pass_two(done: int, total: int) -> None:
            if done == n + 5:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            build_table(session, SUPERNET, [32], out, progress=stop_in_pass_two, **three)
        partial = _keys(LatencyTable.load(out))
        assert sorted(len(e.passes) for e in partial.values()) == [1] * (n - 5) + [2] * 5
        calls: list[tuple[int, int]] = []
        table = build_table(session, SUPERNET, [32], out, progress=lambda *c: calls.append(c), **three)
    assert calls[0] == (n + 5, 3 * n) and calls[-1] == (3 * n, 3 * n)
    assert len(calls) == 1 + 2 * n - 5, "only the missing passes were measured"
    assert one.reference is not None and table.reference is not None
    factor = table.reference.median_ms / one.reference.median_ms
    first = _keys(one)
    for key, entry in _keys(table).items():
        assert len(entry.passes) == 3 and entry.median_ms == statistics.median(entry.passes)
        assert entry.passes[0] == pytest.approx(first[key].median_ms * factor, rel=1e-12)
        assert entry.samples >= 9
    assert LatencyTable.load(out).to_dict() == table.to_dict()


class ThrottledOnce:
    """A real session whose first batch of ops reports throttling, so the build measures it again."""

    def __init__(self, session: AgentSession) -> None:
        self.session, self.benches = session, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.session, name)

    def bench(self, *args: object, **kwargs: object) -> object:
        report = self.session.bench(*args, **kwargs)
        self.benches += 1  # the first bench is the reference's own timing
        if self.benches == 2:
            hot = {"raw": "0x50005", "now": ["throttled"], "since_boot": []}
            return dataclasses.replace(report, conditions_after={**report.conditions_after, "throttle": hot})
        return report


@pytest.mark.usefixtures("steady_cpufreq")  # exact counts: no real clock change may add a batch
def test_a_disturbed_batch_replaces_its_pass(tmp_path: Path) -> None:
    spec = dataclasses.replace(local_device(), workdir=str(tmp_path / "agent"))
    calls: list[int] = []
    with AgentSession(spec) as session:
        throttled = ThrottledOnce(session)
        table = build_table(
            throttled,
            SUPERNET,
            [32],
            tmp_path / "lut.json",
            progress=lambda done, total: calls.append(done),
            **{**FAST, "passes": 2},
        )
    entries = _keys(table)
    batches = -(-len(entries) // FAST["batch_size"])  # per pass
    assert throttled.benches == 1 + 2 * batches + 1, "the reference, two passes, one batch again"
    assert sum(e.remeasured for e in entries.values()) == FAST["batch_size"]
    assert all(len(e.passes) == 2 for e in entries.values()), "the disturbed pass was replaced, not added"
    assert calls[-1] == 2 * len(entries) and len(calls) == 1 + 2 * len(entries)


def test_table_of_other_conditions_is_not_extended(tmp_path: Path) -> None:
    spec = dataclasses.replace(local_device(), workdir=str(tmp_path / "agent"))
    out = tmp_path / "lut.json"
    with AgentSession(spec) as session:
        build_table(session, SUPERNET, [32], out, **FAST)
        with pytest.raises(LutError, match="measured with threads=1, this build has 2"):
            build_table(session, SUPERNET, [32], out, threads=2, **FAST)


def test_disturbed_batches() -> None:
    calm = {"throttle": None, "cpu_mhz": {"cpu0": 1500}}
    assert not disturbed(calm, calm)
    assert disturbed(calm, {"throttle": None, "cpu_mhz": {"cpu0": 600}})
    hot = {"throttle": {"raw": "0x20002", "now": ["throttled"], "since_boot": []}, "cpu_mhz": {}}
    assert disturbed(calm, hot)


def test_build_on_an_ssh_device(ssh_device, tmp_path: Path) -> None:
    """The same build over real OpenSSH: the agent measures there, the table lands here."""
    out = tmp_path / "lut.json"
    with AgentSession(ssh_device.device_spec("jetson")) as session:
        table = build_table(session, SUPERNET, [32], out, **FAST)
    expected = {op.key for op in enumerate_ops(MBv3Spec(0.35, 10, SearchSpace(resolutions=(32, 40))), [32])}
    assert set(LatencyTable.load(out).entries[32]) == expected
    assert table.device.name == "jetson" and table.reference and table.reference.median_ms > 0
    assert all(e.raw_median_ms and e.median_ms > 0 for e in table.entries[32].values())


def test_a_fleets_devices_share_one_reference_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Devices building at once ask for the reference together: it is exported once and never
    replaced, since a device may be hashing and sending it (a second export, not byte-identical,
    once made a fleet device's copy 'arrive corrupted')."""
    from concurrent.futures import ThreadPoolExecutor

    from ofa_edge.measure import reference

    made: list[int] = []
    real_export = reference.export_subnets

    def slow_export(*args, **kwargs):
        made.append(1)
        time.sleep(0.5)  # a real export's duration: every device has asked by then
        return real_export(*args, **kwargs)

    monkeypatch.setattr(reference, "export_subnets", slow_export)
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: reference.reference_model(SUPERNET.spec, 32)[0], range(4)))
    assert len(set(paths)) == 1 and paths[0].is_file()
    assert len(made) == 1, "exported once, whoever asked first"
