"""Android thermal status: ``dumpsys thermalservice`` read (the fake phone's double), a bounded
wait for cool-down before each batch, reported with the batch and the fingerprint."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from device_agents.ofa_edge_agent import parse_thermalservice
from ofa_edge.devices import thermal
from ofa_edge.devices.adb import AdbTransport
from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.android import BenchmarkModelSession
from ofa_edge.devices.inventory import ADB_WORKDIR, load_inventory
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.errors import ConfigError
from ofa_edge.lut.build import disturbed
from ofa_edge.testing import fake_benchmark_model
from ofa_edge.testing.fake_adbd import FakeAdbd
from tests.models import conv_model

TFLITE = Path(__file__).parent / "data" / "conv8.tflite"


@pytest.fixture(autouse=True)
def _quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thermal, "POLL_S", 0.01)


def test_the_dumpsys_double_parses_as_android_prints_it(transport: AdbTransport, phone: FakeAdbd) -> None:
    phone.set_thermal(3, 0)
    hot = parse_thermalservice(transport.run(["dumpsys", "thermalservice"]).stdout)
    cool = parse_thermalservice(transport.run(["dumpsys", "thermalservice"]).stdout)
    # the HAL's current temperatures, not the stale cached 99.0
    assert hot == {
        "status": 3,
        "status_name": "severe",
        "temperatures_c": {"cpu0": 59.5, "VIRTUAL-SKIN": 31.25},
    }
    assert cool is not None and cool["status"] == 0 and cool["temperatures_c"]["cpu0"] == 35.5
    assert transport.run(["dumpsys", "nosuch"]).stdout.strip() == "Can't find service: nosuch"
    # AOSP DumpUtils' refusal (its "from from" included)
    denied = "Permission Denial: can't dump thermalservice from from pid=4242, uid=10200"
    denied += " due to missing android.permission.DUMP permission"
    assert parse_thermalservice(denied) is None


def _phone(adb_spec: DeviceSpec, tmp_path: Path, cool_down_s: float) -> DeviceSpec:
    assert adb_spec.adb is not None
    tool = fake_benchmark_model.install(tmp_path / "benchmark_model")
    return dataclasses.replace(
        adb_spec,
        runtime="tflite",
        workdir=ADB_WORKDIR,
        adb=dataclasses.replace(adb_spec.adb, benchmark_model=tool),
        cool_down_s=cool_down_s,
    )


def test_a_hot_phone_is_given_time_to_cool_before_a_batch(
    adb_spec: DeviceSpec, phone: FakeAdbd, tmp_path: Path
) -> None:
    phone.set_thermal(3, 2, 1)  # severe, moderate, then light (the default limit)
    with BenchmarkModelSession(_phone(adb_spec, tmp_path, 60)) as session:
        report = session.bench([TFLITE], min_runs=3, min_seconds=0)
        assert session.fingerprint()["conditions"]["android_thermal"]["status"] == 1
    waited = report.conditions_before["cool_down"]
    assert (waited["status_before"], waited["status"], waited["limit"], waited["cooled"]) == (3, 1, 1, True)
    assert 0 < waited["waited_s"] < 60
    assert report.conditions_after["android_thermal"]["status_name"] == "light"
    assert report.results[0].error is None


def test_the_wait_is_bounded_and_reported(adb_spec: DeviceSpec, phone: FakeAdbd, tmp_path: Path) -> None:
    phone.set_thermal(4)
    with BenchmarkModelSession(_phone(adb_spec, tmp_path, 0.2)) as session:
        report = session.bench([TFLITE], min_runs=3, min_seconds=0)
    waited = report.conditions_before["cool_down"]
    assert waited["cooled"] is False and waited["status"] == 4 and waited["waited_s"] >= 0.2
    assert report.results[0].error is None, "a phone that stays hot is measured, and says so"


def test_the_agent_on_a_phone_reads_and_waits_too(
    adb_spec: DeviceSpec, phone: FakeAdbd, tmp_path: Path
) -> None:
    phone.set_thermal(2, 0)
    model = conv_model(tmp_path / "m.onnx", channels=4)
    spec = dataclasses.replace(adb_spec, python=sys.executable, workdir=ADB_WORKDIR)
    with AgentSession(spec) as session:
        report = session.bench([model], min_runs=3, min_seconds=0.01)
    assert report.conditions_before["cool_down"]["status_before"] == 2
    assert report.conditions_before["cool_down"]["cooled"]
    assert report.conditions_before["android_thermal"]["status"] == 0


def test_a_device_without_a_thermal_status_is_not_waited_for(tmp_path: Path) -> None:
    from ofa_edge.devices.spec import local_device

    spec = dataclasses.replace(local_device(), workdir=str(tmp_path / "agent"))
    with AgentSession(spec) as session:
        report = session.bench([conv_model(tmp_path / "m.onnx", channels=4)], min_runs=3, min_seconds=0.01)
    assert "cool_down" not in report.conditions_before
    assert report.conditions_before["android_thermal"] is None


def test_inventory_thermal_fields(tmp_path: Path) -> None:
    inv = tmp_path / "devices.toml"
    inv.write_text('[devices.p]\ntransport = "adb"\nthermal_limit = 0\ncool_down_s = 300\n')
    p = load_inventory(inv)["p"]
    assert (p.thermal_limit, p.cool_down_s) == (0, 300.0)
    inv.write_text('[devices.p]\ntransport = "adb"\nthermal_limit = 7\n')
    with pytest.raises(ConfigError, match="thermal_limit=7 must be an integer in 0..6"):
        load_inventory(inv)
    inv.write_text('[devices.p]\ntransport = "adb"\ncool_down_s = -1\n')
    with pytest.raises(ConfigError, match="cool_down_s=-1 must be a number of seconds >= 0"):
        load_inventory(inv)


def test_a_batch_the_phone_heated_during_is_disturbed() -> None:
    cool, hot = {"android_thermal": {"status": 1}}, {"android_thermal": {"status": 2}}
    assert disturbed(cool, hot) and not disturbed(hot, cool) and not disturbed(cool, cool)
    assert not disturbed({"android_thermal": None}, {"android_thermal": None})
