"""Jetsons through test doubles (ofa_edge.testing.jetson): the agent's Jetson fingerprint and
conditions, energy per inference from INA3221 rails in both sysfs layouts, and trtexec as a
runtime (engines built on the device once per model, TensorRT version and precision)."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from ofa_edge.deploy.specialize import Ledger, RunCost
from ofa_edge.devices.agent import AgentSession, agent_source
from ofa_edge.devices.backend import Backend
from ofa_edge.devices.inventory import load_inventory
from ofa_edge.devices.session import BenchResult
from ofa_edge.devices.spec import DeviceSpec, local_device
from ofa_edge.errors import AgentError, ConfigError
from ofa_edge.testing.jetson import NANO_JP4, ORIN_NANO_JP6, Board, JetsonDouble, Rail
from tests.models import conv_model
from tests.test_cli_commands import ok

#: An AGX Orin's rails (no module input rail: the total is their sum).
AGX_ORIN_RAILS = (
    Rail("VDD_GPU_SOC", 19968, 257),
    Rail("VDD_CPU_CV", 19976, 164),
    Rail("VIN_SYS_5V0", 4996, 1100),
)
BOARDS = {
    "orin-nano-jp6": ORIN_NANO_JP6,
    "nano-jp4": NANO_JP4,
    "agx-orin-rails": dataclasses.replace(ORIN_NANO_JP6, rails=AGX_ORIN_RAILS),
}


def on_board(board: Board, root: Path, monkeypatch: pytest.MonkeyPatch, **kw: float) -> JetsonDouble:
    """The double written under ``root`` and this process's environment pointed at it (the local
    device's agent inherits it)."""
    double = JetsonDouble(board, root, **kw)
    for key, value in double.env.items():
        monkeypatch.setenv(key, value)
    return double


def agent_module() -> ModuleType:
    """A fresh copy of the agent (its folder knobs are read at import)."""
    spec = importlib.util.spec_from_file_location("ofa_edge_agent_jetson", agent_source())
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("board", [ORIN_NANO_JP6, NANO_JP4], ids=lambda b: b.name)
def test_fingerprint_names_release_power_mode_clocks_and_rails(
    board: Board, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_board(board, tmp_path, monkeypatch)
    fp = agent_module().fingerprint()
    assert fp["board"] == board.model and fp["cores"] and fp["compatible"] == list(board.compatible)
    jetson = fp["jetson"]
    assert jetson["l4t"] == {"jetson-orin-nano-jp6": "36.3.0", "jetson-nano-jp4": "32.7.1"}[board.name]
    assert (jetson["nvpmodel"]["name"], jetson["nvpmodel"]["id"]) == (board.mode_name, board.mode)
    assert len(jetson["nvpmodel"]["conf_sha256"]) == 16
    assert jetson["jetson_clocks"] is False
    assert jetson["power_rails"] == sorted(r.label for r in board.rails)
    assert fp["runtimes"]["trtexec"]["version"] == board.tensorrt
    now = fp["conditions"]["jetson"]
    assert now["gpu_mhz"] == now["gpu_max_mhz"] == round(board.gpu_hz[1] / 1e6)
    assert now["gpu_min_mhz"] == round(board.gpu_hz[0] / 1e6)
    assert now["emc_mhz"] == board.emc_hz // 1000000
    assert fp["conditions"]["temperatures_c"] == dict(board.thermal)


def test_power_mode_and_jetson_clocks_change_the_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table's identity holds the jetson entry: another mode or pinned clocks are another device."""
    on_board(ORIN_NANO_JP6, tmp_path / "a", monkeypatch)
    default = agent_module().fingerprint()["jetson"]
    on_board(dataclasses.replace(ORIN_NANO_JP6, mode=1, jetson_clocks=True), tmp_path / "b", monkeypatch)
    pinned = agent_module().fingerprint()["jetson"]
    assert pinned["nvpmodel"] == {**default["nvpmodel"], "name": "7W", "id": 1}
    assert pinned["jetson_clocks"] is True and default != pinned


def test_emc_clock_from_tegrastats_without_debugfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """debugfs is root's: an agent without it reads the EMC clock from a tegrastats line."""
    on_board(NANO_JP4, tmp_path, monkeypatch)
    (tmp_path / "sys" / NANO_JP4.emc_rate_file).unlink()
    (tmp_path / "state.json").write_text(
        (tmp_path / "state.json").read_text().replace("EMC_FREQ 9%@1600", "EMC_FREQ 9%@1331")
    )
    assert agent_module().conditions()["jetson"]["emc_mhz"] == 1331


def test_not_a_jetson_has_no_jetson_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_board(NANO_JP4, tmp_path, monkeypatch)
    (tmp_path / "etc" / "nv_tegra_release").unlink()
    fp = agent_module().fingerprint()
    assert fp["jetson"] is None and fp["conditions"]["jetson"] is None


@pytest.mark.parametrize("name", list(BOARDS))
def test_rails_found_in_hwmon_and_iio_layouts(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    board = BOARDS[name]
    on_board(board, tmp_path, monkeypatch)
    agent = agent_module()
    rails = agent.power_rails()
    assert {label: agent._rail_mw(files) for label, files in rails.items()} == {
        r.label: r.mw for r in board.rails
    }


@pytest.fixture
def jetson_spec(tmp_path: Path) -> DeviceSpec:
    return dataclasses.replace(local_device(), workdir=str(tmp_path / "agent"))


@pytest.mark.parametrize("name", list(BOARDS))
def test_bench_reports_energy_per_inference(
    name: str, jetson_spec: DeviceSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every rail of the double reads a constant power, so each inference's energy is that
    power times its own latency: the agent's figure is checked against it."""
    board = BOARDS[name]
    on_board(board, tmp_path / "board", monkeypatch)
    model = conv_model(tmp_path / "m.onnx", channels=16)
    with AgentSession(jetson_spec) as session:
        report = session.bench([model], min_runs=30, min_seconds=0.3)
    (r,) = report.results
    assert r.error is None and r.energy_mj is not None and r.mean_ms is not None
    assert r.energy_mj == pytest.approx(board.input_mw * r.mean_ms / 1000, rel=1e-9)
    assert r.power_mw == pytest.approx({rail.label: rail.mw for rail in board.rails}, abs=1e-3)
    assert report.conditions_before["jetson"]["gpu_mhz"] == round(board.gpu_hz[1] / 1e6)
    assert session.power.watts == pytest.approx(board.input_mw / 1000, rel=1e-9)


def test_run_cost_uses_measured_device_power_and_says_so() -> None:
    ledger = Ledger(device_s={"table": 3600.0}, host_cpu_s={"search": 0.0})
    measured = RunCost(ledger, host_watts_per_core=15.0, device_watts=5.0, measured_device_watts=5.297)
    assumed = RunCost(ledger, host_watts_per_core=15.0, device_watts=5.0)
    assert (measured.energy_wh, assumed.energy_wh) == pytest.approx((5.297, 5.0))
    assert measured.to_dict()["device_power"]["source"].startswith("measured")
    assert assumed.to_dict()["device_power"] == {
        "watts": 5.0,
        "source": "estimate: the device_watts assumption",
    }


def test_no_rails_no_energy(jetson_spec: DeviceSpec, tmp_path: Path) -> None:
    with AgentSession(jetson_spec) as session:
        (r,) = session.bench([conv_model(tmp_path / "m.onnx")], min_runs=5, min_seconds=0.05).results
    assert r.error is None and r.energy_mj is None and r.power_mw is None
    assert session.power.watts is None


def double_latency_ms(model: Path, precision: str) -> float:
    """The trtexec double's GPU compute time for a model (see its script)."""
    return 0.2 + model.stat().st_size / 1e6 / {"fp32": 1, "fp16": 2, "int8": 4}[precision]


@pytest.mark.parametrize(
    ("board", "tensorrt", "build_flag"),
    [
        (ORIN_NANO_JP6, "10.3.0", "--skipInference"),
        (ORIN_NANO_JP6, "8.6.2", "--skipInference"),
        (NANO_JP4, "8.2.1", "--buildOnly"),
    ],
)
def test_trtexec_builds_engine_on_device_once_and_reads_its_summary(
    board: Board,
    tensorrt: str,
    build_flag: str,
    jetson_spec: DeviceSpec,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    double = on_board(
        dataclasses.replace(board, tensorrt=tensorrt), tmp_path / "board", monkeypatch, build_s=7.25
    )
    spec = dataclasses.replace(jetson_spec, runtime="trtexec", backend=Backend("trtexec", precision="fp16"))
    model = conv_model(tmp_path / "m.onnx", channels=16)
    results: list[BenchResult] = []
    for _ in range(2):
        with AgentSession(spec) as session:
            assert not session.interleaves
            results += session.bench([model], min_runs=50, min_seconds=0.2).results
    first, second = results
    assert first.error is None and second.error is None
    assert first.engine is not None and second.engine is not None
    assert first.engine["tensorrt"] == tensorrt and first.engine["precision"] == "fp16"
    assert (first.engine["cached"], first.engine["build_s"]) == (False, 7.25)
    assert (second.engine["cached"], second.engine["build_s"]) == (True, None)
    builds = [call for call in double.trtexec_calls if any(a.startswith("--onnx=") for a in call)]
    assert len(builds) == 1 and build_flag in builds[0] and "--fp16" in builds[0]
    engines = list((Path(spec.workdir) / "engines").iterdir())
    assert [e.name for e in engines] == [first.engine["file"]] and f"-trt{tensorrt}-fp16" in engines[0].name
    gpu = double_latency_ms(model, "fp16")
    assert first.median_ms == pytest.approx(gpu, rel=1e-4)
    assert first.end_to_end_ms is not None and first.end_to_end_ms["median"] == pytest.approx(
        gpu + 0.05, rel=1e-4
    )
    assert (first.p90_ms is None) == (tensorrt == "8.2.1"), "TensorRT 8.2 prints p99 alone"
    assert first.runs >= 50
    # energy: the input rail's constant power over the timed queries' wall time
    assert first.energy_mj == pytest.approx(board.input_mw * (gpu + 0.05) / 1000, rel=1e-3)


def test_engine_rebuilt_for_another_tensorrt(
    jetson_spec: DeviceSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine serves one TensorRT version only: an upgraded device builds its own."""
    spec = dataclasses.replace(jetson_spec, runtime="trtexec")
    model = conv_model(tmp_path / "m.onnx")
    versions = []
    for tensorrt in ("8.6.2", "10.3.0"):
        on_board(dataclasses.replace(ORIN_NANO_JP6, tensorrt=tensorrt), tmp_path / tensorrt, monkeypatch)
        with AgentSession(spec) as session:
            (r,) = session.bench([model], min_runs=5, min_seconds=0.05).results
        assert r.engine is not None and not r.engine["cached"]
        versions.append(r.engine["tensorrt"])
    assert versions == ["8.6.2", "10.3.0"]
    assert len(list((Path(spec.workdir) / "engines").iterdir())) == 2


def test_device_without_trtexec_gets_one_line(jetson_spec: DeviceSpec, tmp_path: Path) -> None:
    spec = dataclasses.replace(jetson_spec, runtime="trtexec")
    with AgentSession(spec) as session, pytest.raises(AgentError, match="trtexec is neither on PATH nor at"):
        session.bench([conv_model(tmp_path / "m.onnx")])


def test_inventory_takes_trtexec_and_a_precision(tmp_path: Path) -> None:
    inventory = tmp_path / "devices.toml"
    entry = '[devices.orin]\ntransport = "local"\nbackend = {{ runtime = "trtexec", precision = "{}" }}\n'
    inventory.write_text(entry.format("fp16"))
    orin = load_inventory(inventory)["orin"]
    assert (orin.runtime, orin.backend_for().precision) == ("trtexec", "fp16")
    inventory.write_text(entry.format("fp8"))
    with pytest.raises(ConfigError, match=r"precision='fp8' is not one of \['fp32', 'fp16', 'int8'\]"):
        load_inventory(inventory)


def test_cli_bench_on_a_trtexec_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ofa-edge bench`` runs an .onnx file with the device's trtexec and reports energy and
    the engine apart from the latency."""
    on_board(ORIN_NANO_JP6, tmp_path / "board", monkeypatch)
    inventory = tmp_path / "devices.toml"
    inventory.write_text(
        f'[devices.orin]\ntransport = "local"\nbackend = {{ runtime = "trtexec", precision = "int8" }}\n'
        f'workdir = "{tmp_path / "agent"}"\n'
    )
    model = conv_model(tmp_path / "m.onnx")
    doc = ok("bench", "orin", str(model), "--runs", "5", "--inventory", str(inventory))
    assert doc["runtime"] == "trtexec" and doc["engine"]["precision"] == "int8"
    assert doc["median_ms"] == pytest.approx(double_latency_ms(model, "int8"), rel=1e-4)
    assert doc["energy_mj"] == pytest.approx(
        ORIN_NANO_JP6.input_mw * doc["end_to_end_ms"]["median"] / 1000, rel=1e-3
    )
