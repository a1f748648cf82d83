"""The device agent on the local device: deploy, fingerprint, bench, and its failure modes."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from ofa_edge.devices.agent import AgentSession, agent_source
from ofa_edge.devices.session import BenchResult
from ofa_edge.devices.spec import DeviceSpec, local_device
from ofa_edge.errors import AgentError
from tests.models import conv_model, slow_model
from tests.testbed import bench_seconds, measuring_children


@pytest.fixture
def spec(tmp_path: Path) -> DeviceSpec:
    return dataclasses.replace(local_device(), workdir=str(tmp_path / "device work dir"))


def test_deploy_once_and_redeploy_when_changed(spec: DeviceSpec) -> None:
    with AgentSession(spec) as first:
        assert first.deployed and first.hello["protocol"] == 1
    with AgentSession(spec) as second:
        assert not second.deployed, "an unchanged agent is not copied again"
    deployed = Path(spec.workdir) / "ofa_edge_agent.py"
    deployed.write_text(deployed.read_text() + "\n# tampered\n")
    with AgentSession(spec) as third:
        assert third.deployed
    assert deployed.read_bytes() == agent_source().read_bytes()


def test_fingerprint(spec: DeviceSpec) -> None:
    with AgentSession(spec) as session:
        fp = session.fingerprint()
    assert fp["cores"] == os.cpu_count() and fp["arch"]
    assert fp["runtimes"]["onnxruntime"]["version"]
    assert "CPUExecutionProvider" in fp["runtimes"]["onnxruntime"]["providers"]
    assert set(fp["conditions"]) >= {"cpu_mhz", "temperatures_c", "throttle"}


def test_bench_streams_results_and_odd_names(spec: DeviceSpec, tmp_path: Path) -> None:
    small = conv_model(tmp_path / "m" / "small.onnx", channels=4)
    big = conv_model(tmp_path / "m" / "a b;$(touch PWNED)'\".onnx", channels=64, size=64)
    seen = []
    with AgentSession(spec) as session:
        report = session.bench([small, big], min_runs=15, min_seconds=0.1, on_result=seen.append)
    assert [r.name for r in seen] == [small.name, big.name]
    by_name = {r.name: r for r in report.results}
    for r in report.results:
        assert r.error is None and r.runs >= 15 and len(r.samples_ms) == r.runs
        assert r.p10_ms <= r.median_ms <= r.p90_ms
    assert by_name[small.name].median_ms < by_name[big.name].median_ms
    assert report.conditions_before and report.conditions_after
    assert not list(tmp_path.rglob("PWNED"))


def test_overlong_model_times_out_and_others_are_measured(spec: DeviceSpec, tmp_path: Path) -> None:
    first, last = conv_model(tmp_path / "first.onnx"), conv_model(tmp_path / "last.onnx", channels=16)
    slow = slow_model(tmp_path / "slow.onnx")  # 10,000 runs of it: minutes, on any device
    runs = {"min_runs": 100000, "min_seconds": 0.2}  # every model: max_runs (10,000) runs
    with AgentSession(spec) as session:
        # The budget: a few times what the two other models take together on this device.
        timeout = math.ceil(4 * bench_seconds(session, [first, last], **runs))
        started = time.monotonic()
        report = session.bench([first, slow, last], model_timeout=timeout, **runs)
        elapsed = time.monotonic() - started
    errors = {r.name: r.error for r in report.results}
    assert errors["first.onnx"] is None and errors["last.onnx"] is None
    assert errors["slow.onnx"] == f"timed out after {timeout} s"
    assert elapsed < 5 * timeout, "the slow model was stopped at its timeout, not measured to the end"


def test_crashed_measurement_is_reported_for_that_model(spec: DeviceSpec, tmp_path: Path) -> None:
    models = [slow_model(tmp_path / "victim.onnx"), conv_model(tmp_path / "after.onnx")]
    benched = threading.Event()

    def kill_child() -> None:
        """SIGKILL the first measuring child once it has run a while (the victim's)."""
        while not benched.is_set():
            children = measuring_children(spec.workdir)
            if children:
                time.sleep(0.5)
                os.kill(children[0], signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_child)
    with AgentSession(spec) as session:
        killer.start()
        try:  # the victim runs 10,000 slow runs: it is still measuring when killed
            report = session.bench(models, min_runs=100000)
        finally:
            benched.set()
            killer.join()
    errors = {r.name: r.error for r in report.results}
    assert errors["victim.onnx"].startswith("crashed (exit -9)")
    assert errors["after.onnx"] is None


def test_agent_killed_mid_bench_names_model_and_recovers(spec: DeviceSpec, tmp_path: Path) -> None:
    models = [conv_model(tmp_path / "ok.onnx"), slow_model(tmp_path / "long.onnx")]
    with AgentSession(spec) as session:
        pid = session.hello["pid"]
        measured = []

        def kill_agent_after_first(result: BenchResult) -> None:
            """The agent dies once ok.onnx is reported: while it measures long.onnx."""
            measured.append(result)
            os.kill(pid, signal.SIGKILL)

        with pytest.raises(AgentError, match="stopped while measuring long.onnx") as info:
            session.bench(models, min_runs=100000, min_seconds=0.3, on_result=kill_agent_after_first)
        assert [r.name for r in measured] == ["ok.onnx"], "results before the crash were delivered"
        assert "\n" not in str(info.value)
        assert session.fingerprint()["cores"], "the next call starts a fresh agent"
        assert session.hello["pid"] != pid


def test_no_orphaned_measurement_after_agent_death(spec: DeviceSpec, tmp_path: Path) -> None:
    """A killed agent's measuring child stops too, instead of burning the device's CPU."""
    long = slow_model(tmp_path / "long.onnx")
    with AgentSession(spec) as session:
        # A measuring child checks its agent after every run: one run of the model (child start
        # and load included) is the unit of the time it may outlive its agent.
        unit = bench_seconds(session, [long], warmup=0, min_runs=1, min_seconds=0)
        pid = session.hello["pid"]

        def kill_agent_once_measuring() -> None:
            while not measuring_children(spec.workdir):
                time.sleep(0.02)
            time.sleep(unit)
            os.kill(pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_agent_once_measuring)
        killer.start()
        with pytest.raises(AgentError):
            session.bench([long], min_runs=100000)
        killer.join()
    deadline = time.monotonic() + 20 * unit  # child start, load, 5 warm-up runs and a run: < 7
    while measuring_children(spec.workdir):
        assert time.monotonic() < deadline, "a measuring child outlived its agent"
        time.sleep(0.2)


def test_bench_against_a_reference_reports_interleaved_ratios(spec: DeviceSpec, tmp_path: Path) -> None:
    small = conv_model(tmp_path / "m" / "small.onnx", channels=4)
    big = conv_model(tmp_path / "m" / "big.onnx", channels=64, size=64)
    reference = conv_model(tmp_path / "ref" / "small.onnx", channels=4)  # the same net as ``small``
    with AgentSession(spec) as session:
        report = session.bench([small, big], reference=reference, min_runs=20, min_seconds=0.2)
    by_name = {r.name: r for r in report.results}
    for r in report.results:
        assert r.error is None and r.ref_median_ms > 0 and r.runs >= 20 and r.runs % 10 == 0  # bursts of 10
    assert 0.5 < by_name[small.name].ratio < 2.0, "the reference's own net runs at about its speed"
    assert by_name[big.name].ratio > 2 * by_name[small.name].ratio


def test_interleaved_timing_cancels_speed_changes_within_a_second() -> None:
    """The agent's interleaving on runners whose speed jumps 3x every 40 ms (a busy shared
    host): each burst's ratio sees one speed, so the ratio holds where a plain time does not."""
    from device_agents.ofa_edge_agent import measure_interleaved

    def runner(cost_ms: float):
        def run() -> None:
            speed = 3.0 if int(time.perf_counter() / 0.04) % 2 else 1.0
            end = time.perf_counter() + cost_ms * speed / 1e3
            while time.perf_counter() < end:
                pass

        return run

    spec = {"burst": 10, "burst_warmup": 2, "min_runs": 50, "min_seconds": 1.0, "max_runs": 10**6}
    samples, relative = measure_interleaved(runner(0.2), runner(0.1), spec)
    assert relative["ratio"] == pytest.approx(2.0, rel=0.1)
    assert relative["bursts"] * 10 == len(samples)
    assert max(samples) > 2.5 * min(samples), "the raw times really moved with the speed"
