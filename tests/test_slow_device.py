"""Tests that hold on slow and unsteady devices: the measuring path at the slow test-bed device's
speed through the production timeouts, and batches re-measured under a simulated cpufreq governor."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.spec import local_device
from ofa_edge.lut.build import build_table
from ofa_edge.lut.keys import enumerate_ops
from ofa_edge.lut.table import LatencyTable, SupernetRef
from ofa_edge.lut.validate import validate
from ofa_edge.supernet.space import SearchSpace
from ofa_edge.supernet.spec import MBv3Spec
from ofa_edge.testing.sshd import SshDevice
from tests.models import conv_model
from tests.testbed import SYSFS_ENV, SimulatedCpufreq

# The smallest space whose subnets still differ (by depth): 16 ops at one resolution.
SPACE = SearchSpace(ks_list=(3,), expand_ratio_list=(3,), depth_list=(1, 2), resolutions=(32,))
TINY = SupernetRef("tiny-slow", MBv3Spec(0.35, 10, SPACE))
OPS = {op.key for op in enumerate_ops(TINY.spec, [32])}


@pytest.fixture(scope="module")
def micro_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _shared_cache(_isolated_cache: None, micro_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The module's tests measure the same op models: exported once, not once per test."""
    monkeypatch.setenv("OFA_EDGE_CACHE", str(micro_cache))


def test_bench_table_and_validate_at_slow_device_speed(slow_ssh_device: SshDevice, tmp_path: Path) -> None:
    """`bench`, `lut build` and `lut validate` on the CPU-quota device with the production
    timeouts (AgentSession's defaults: 60 s per model, 120 s per request) and measuring settings."""
    out = tmp_path / "lut.json"
    with AgentSession(slow_ssh_device.device_spec("slow pi")) as session:
        cgroup = Path(f"/proc/{session.hello['pid']}/cgroup").read_text()
        assert "ofa-edge-sshd-" in cgroup, "the agent runs under the device's CPU quota"
        (result,) = session.bench([conv_model(tmp_path / "conv.onnx")], min_runs=50).results  # bench's --runs
        table = build_table(session, TINY, [32], out, passes=1)
        report = validate(session, out, samples=6, rounds=1, work=tmp_path)
    assert result.error is None and result.runs >= 50
    assert result.p10_ms is not None and result.p90_ms is not None and result.median_ms is not None
    assert 0 < result.p10_ms <= result.median_ms <= result.p90_ms
    assert set(table.entries[32]) == OPS and all(e.median_ms > 0 for e in table.entries[32].values())
    assert table.reference is not None and table.reference.median_ms > 0
    stored = LatencyTable.load(out)
    assert stored.calibration is not None and stored.calibration.subnets == report.fitted_on == 3
    assert report.held_out == 3 and all(p.measured_ms > 0 for p in report.points)


def _steady(n: int) -> int:
    return 1500


def _drops_in_second_batch(n: int) -> int:
    return 1500 if n < 3 else 600  # children: 1 the reference, 2 and 3 the batches


def _ondemand(n: int) -> int:
    return 1500 if n % 2 else 600  # up while one child measures, down by the next: every batch


@pytest.mark.parametrize(
    ("clock", "children", "remeasured"),
    [(_steady, 3, 0), (_drops_in_second_batch, 4, 8), (_ondemand, 5, 16)],
    ids=["steady", "one-change", "ondemand"],
)
def test_a_batch_whose_clock_moved_is_measured_again_once(
    clock: Callable[[int], int],
    children: int,
    remeasured: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two batches of 8 ops on the local agent reading a simulated cpufreq tree: a batch during
    which the clock moved is measured again, once, even when it moves in every batch (then every
    entry says ``remeasured``); a steady clock re-measures nothing."""
    spec = dataclasses.replace(local_device(), workdir=str(tmp_path / "agent"))
    monkeypatch.setenv(SYSFS_ENV, str(tmp_path / "sysfs"))
    governor = SimulatedCpufreq(tmp_path / "sysfs", spec.workdir, clock)
    with governor, AgentSession(spec) as session:
        fingerprint = session.fingerprint()
        table = build_table(
            session, TINY, [32], tmp_path / "lut.json", passes=1, batch_size=8, min_runs=3, min_seconds=0
        )
    assert fingerprint["governors"] == ["ondemand"] and fingerprint["online_cpus"] == "0-1"
    assert fingerprint["conditions"]["cpu_mhz"] == {"cpu0": clock(0), "cpu1": clock(0)}
    assert governor.children == children, "the reference, two batches, and each batch again once"
    entries = table.entries[32]
    assert set(entries) == OPS and all(len(e.passes) == 1 and e.median_ms > 0 for e in entries.values())
    assert sum(e.remeasured for e in entries.values()) == remeasured


def test_every_wait_scales_with_the_devices_slowdown(tmp_path: Path) -> None:
    """The rule: the host waits ``seconds * slowdown`` for work a desktop does in ``seconds``.
    What a device of slowdown 1 finishes in time, the same device declared 1000x faster
    (slowdown 0.001) overruns, for a command and for an agent request alike, and the error says
    which knob to turn."""
    from ofa_edge.devices.transports import open_transport
    from ofa_edge.errors import CommandTimeout

    base = dataclasses.replace(local_device(), workdir=str(tmp_path / "agent"))
    with open_transport(base) as transport:
        assert transport.run(["sleep", "0.2"], timeout=1).ok
    hasty = dataclasses.replace(base, slowdown=0.001)
    with open_transport(hasty) as transport, pytest.raises(CommandTimeout, match="within 0.001 s"):
        transport.run(["sleep", "0.2"], timeout=1)
    with AgentSession(base) as session:
        assert session.fingerprint()["cores"]
    session = AgentSession(dataclasses.replace(base, slowdown=1e-4))
    with pytest.raises(CommandTimeout, match="slowdown"):
        session.start()  # the agent's hello: 60 desktop seconds, here 6 ms
    session.close()
