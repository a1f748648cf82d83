"""Backends per device: the inventory's ``backend``, real onnxruntime provider fallback refused,
LiteRT's delegates in the Python agent, and tables refused across backends."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from device_agents import ofa_edge_agent as agent
from ofa_edge.deploy.specialize import stale_reasons
from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.backend import Backend, Placement, default_backend, parse_backend
from ofa_edge.devices.inventory import load_inventory
from ofa_edge.devices.spec import DeviceSpec, local_device
from ofa_edge.errors import ConfigError, LutError, PlacementError
from ofa_edge.lut.table import DeviceRecord, LatencyTable, Runtime, SupernetRef, check_backend
from ofa_edge.supernet.spec import MBv3Spec
from tests.models import conv_model
from tests.test_cli import error_line, run

TFLITE = Path(__file__).parent / "data" / "conv8.tflite"
CUDA = {"providers": ["CUDAExecutionProvider"]}


def _spec(tmp_path: Path, backend: dict | None = None, runtime: str = "onnxruntime") -> DeviceSpec:
    parsed = None if backend is None else parse_backend("local", backend, runtime)
    return dataclasses.replace(
        local_device(), workdir=str(tmp_path / "agent"), runtime=runtime, backend=parsed
    )


def test_inventory_backends_and_their_records(tmp_path: Path) -> None:
    inv = tmp_path / "devices.toml"
    inv.write_text(
        """
[devices.orin]
transport = "local"
backend = { runtime = "onnxruntime", precision = "fp16", providers = [
  { name = "TensorrtExecutionProvider", trt_engine_cache_enable = true, trt_engine_cache_path = "trt" },
  "CUDAExecutionProvider" ] }

[devices.pixel]
transport = "adb"
runtime = "tflite"
backend = { delegate = "gpu", precision = "fp16" }

[devices.pi]
transport = "local"
runtime = "tflite"
"""
    )
    devices = load_inventory(inv)
    orin, pixel, pi = (
        devices["orin"].backend_for(),
        devices["pixel"].backend_for(),
        devices["pi"].backend_for(),
    )
    assert orin.target == "TensorrtExecutionProvider" and pixel.target == "gpu" and pi.target is None
    assert orin.ort_providers() == [
        [
            "TensorrtExecutionProvider",
            {"trt_engine_cache_enable": True, "trt_engine_cache_path": "trt", "trt_fp16_enable": True},
        ],
        ["CUDAExecutionProvider", {}],
    ]
    assert pi == default_backend("tflite") and pi.delegate == "xnnpack"
    assert pixel.request()["library"] == "libtensorflowlite_gpu_delegate.so"
    assert pixel.request()["options"] == {"precision_loss_allowed": 1}
    # a model of the other runtime runs on that runtime's default backend
    assert devices["pixel"].backend_for("onnxruntime") == default_backend("onnxruntime")
    for backend in (orin, pixel, pi):
        recorded = json.loads(json.dumps(backend.to_dict()))
        assert Backend.from_dict(recorded) == backend
    assert orin.to_dict()["providers"][0] == {
        "name": "TensorrtExecutionProvider",
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": "trt",
    }


@pytest.mark.parametrize(
    ("backend", "runtime", "message"),
    [
        ({"delegate": "gpu"}, "onnxruntime", r"unknown backend field\(s\) \['delegate'\]"),
        ({"providers": ["cuda"]}, "onnxruntime", "'cuda' is not an onnxruntime execution provider"),
        ({"providers": []}, "onnxruntime", "providers must be a non-empty list"),
        ({"precision": "fp16"}, "onnxruntime", "needs the first provider to be TensorrtExecutionProvider"),
        (
            {"providers": [{"name": "TensorrtExecutionProvider", "trt_fp16_enable": True}]},
            "onnxruntime",
            "are set by the backend's precision",
        ),
        ({"delegate": "hexagon"}, "tflite", "delegate='hexagon' is not one of"),
        ({"delegate": "xnnpack", "precision": "fp16"}, "tflite", "needs the gpu or nnapi delegate"),
        ({"delegate": "gpu", "precision": "int8"}, "tflite", "needs the gpu or nnapi delegate"),
        ({"delegate": "none", "library": "x.so"}, "tflite", "library must be the path of a gpu or nnapi"),
        ({"runtime": "tensorrt"}, "onnxruntime", "runtime='tensorrt' is not one of"),
        ({"allow_partial": "yes"}, "tflite", "allow_partial must be true or false"),
    ],
)
def test_bad_backends_are_named(backend: dict, runtime: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_backend("dev", backend, runtime)


def test_backend_runtime_must_agree_with_the_device_runtime(tmp_path: Path) -> None:
    inv = tmp_path / "devices.toml"
    inv.write_text('[devices.d]\nruntime = "onnxruntime"\nbackend = { runtime = "tflite" }\n')
    with pytest.raises(ConfigError, match="runtime='onnxruntime' but backend runtime='tflite'"):
        load_inventory(inv)


def test_provider_onnxruntime_drops_is_refused_with_its_coverage(tmp_path: Path) -> None:
    """Real onnxruntime: a CPU-only build given CUDA warns and runs every node on the CPU."""
    model = conv_model(tmp_path / "m.onnx")
    with AgentSession(_spec(tmp_path, CUDA)) as session:
        with pytest.raises(PlacementError) as caught:
            session.bench([model], min_runs=3, min_seconds=0.01)
        assert session.fingerprint()["agent_version"], "the agent still answers after a refusal"
    message = str(caught.value)
    assert "local: m.onnx runs 0 of 2 nodes on CUDAExecutionProvider (CPUExecutionProvider: 2)" in message
    assert "\n" not in message and "allow_partial = true" in message
    assert caught.value.fields["placement"]["by_provider"] == {"CPUExecutionProvider": 2}


def test_partial_placement_allowed_is_measured_and_recorded(tmp_path: Path) -> None:
    model = conv_model(tmp_path / "m.onnx")
    with AgentSession(_spec(tmp_path, {**CUDA, "allow_partial": True})) as session:
        (result,) = session.bench([model], min_runs=3, min_seconds=0.01).results
    assert result.error is None and result.runs >= 3
    assert result.placement == Placement(
        "CUDAExecutionProvider", False, 2, 0, None, {"CPUExecutionProvider": 2}
    )


def test_the_cpu_backend_is_not_profiled(tmp_path: Path) -> None:
    model = conv_model(tmp_path / "m.onnx")
    with AgentSession(_spec(tmp_path)) as session:
        (result,) = session.bench([model], min_runs=3, min_seconds=0.01).results
    assert result.error is None and result.placement is None


def test_onnx_placement_reads_the_profile_and_ends_it(tmp_path: Path) -> None:
    """The per-node providers of one profiled run; the profile file is removed, profiling ended."""
    import numpy as np

    model = conv_model(tmp_path / "m.onnx")
    run, placement = agent._make_runner(
        str(model), "onnxruntime", 1, parse_backend("d", CUDA, "onnxruntime").request()
    )
    assert placement["by_provider"] == {"CPUExecutionProvider": 2} and not placement["whole"]
    session = agent._onnx_session(str(model), 1, [["CPUExecutionProvider", {}]], profile=True)
    feeds = {"x": np.zeros((1, 3, 32, 32), np.float32)}
    whole = agent._onnx_placement(session, feeds, "CPUExecutionProvider")
    assert whole["whole"] and whole["on_target"] == whole["nodes"] == 2
    session.run(None, feeds)
    assert session.end_profiling() == "", "profiling stopped after the placement run"
    run()


@pytest.mark.parametrize(("delegate", "on_target", "partitions"), [("xnnpack", 3, 1), ("none", 0, 0)])
def test_tflite_delegates_xnnpack_and_none_are_real(delegate: str, on_target: int, partitions: int) -> None:
    """LiteRT here: XNNPACK takes the conv model's 3 nodes in one partition; ``none`` runs the
    builtin kernels only (no DELEGATE node)."""
    interp = agent._tflite_interpreter(str(TFLITE), 1, {"delegate": delegate})
    placement = agent._tflite_placement(interp, delegate)
    assert (placement["nodes"], placement["on_target"], placement["partitions"]) == (3, on_target, partitions)
    assert placement["whole"] == (delegate == "xnnpack")
    interp.invoke()


def test_an_absent_gpu_delegate_library_is_one_line(tmp_path: Path) -> None:
    spec = _spec(tmp_path, {"delegate": "gpu"}, runtime="tflite")
    with AgentSession(spec) as session:
        (result,) = session.bench([TFLITE], min_runs=3, min_seconds=0.01).results
    assert result.error is not None and "\n" not in result.error
    assert result.error.startswith(
        "DelegateUnavailable: cannot load the gpu delegate libtensorflowlite_gpu_delegate.so: "
    )


def test_nnapi_in_the_python_agent_needs_its_library() -> None:
    with pytest.raises(agent.DelegateUnavailable, match="the nnapi delegate needs its library"):
        agent._tflite_interpreter(
            str(TFLITE), 1, parse_backend("d", {"delegate": "nnapi"}, "tflite").request()
        )


def _table(backend: Backend | None = None) -> LatencyTable:
    return LatencyTable(
        SupernetRef("x", MBv3Spec()), DeviceRecord("local"), Runtime("onnxruntime"), backend=backend
    )


def test_tables_record_their_backend_and_refuse_another(tmp_path: Path) -> None:
    cuda = parse_backend("local", {**CUDA, "allow_partial": True}, "onnxruntime")
    table = _table(cuda)
    table.save(tmp_path / "t.json")
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["schema_version"] == 7 and "delegate" not in data
    assert data["backend"]["providers"] == [{"name": "CUDAExecutionProvider"}]
    loaded = LatencyTable.load(tmp_path / "t.json")
    assert loaded.backend == cuda
    check_backend(loaded, _spec(tmp_path, {**CUDA, "allow_partial": True}), "t.json")
    with pytest.raises(
        LutError,
        match=r"t.json: it was measured on onnxruntime \[CUDAExecutionProvider\] fp32, "
        r"partial allowed, local now runs onnxruntime \[CPUExecutionProvider\] fp32",
    ):
        check_backend(loaded, _spec(tmp_path), "t.json")
    # specialize keeps a table of another backend aside, saying why
    cpu = default_backend("onnxruntime")
    assert (
        "it was measured on onnxruntime [CUDAExecutionProvider] fp32, partial allowed, the device now runs "
        "onnxruntime [CPUExecutionProvider] fp32" in stale_reasons(loaded, {}, None, "interleaved", cpu)
    )
    assert not any("measured on" in r for r in stale_reasons(loaded, {}, None, "interleaved", cuda))


def test_tables_before_backends_read_as_the_cpu(tmp_path: Path) -> None:
    data = _table().to_dict()
    del data["backend"]
    data.update(schema_version=6, delegate="cpu")
    old = LatencyTable.from_dict(data)
    assert old.backend == default_backend("onnxruntime")
    check_backend(old, _spec(tmp_path), "old")
    with pytest.raises(LutError, match="measured on onnxruntime \\[CPUExecutionProvider\\]"):
        check_backend(old, _spec(tmp_path, CUDA), "old")


def test_cli_bench_refuses_with_one_line_and_records_the_backend(tmp_path: Path) -> None:
    model = conv_model(tmp_path / "m.onnx")
    inv = tmp_path / "devices.toml"
    inv.write_text(
        f'[devices.gpu]\ntransport = "local"\nworkdir = "{tmp_path / "agent"}"\n'
        'backend = { providers = ["CUDAExecutionProvider"] }\n'
        f'[devices.partial]\ntransport = "local"\nworkdir = "{tmp_path / "agent"}"\n'
        'backend = { providers = ["CUDAExecutionProvider"], allow_partial = true }\n'
    )
    line = error_line(run("bench", "gpu", str(model), "--inventory", str(inv), "--runs", "3"), 5)
    assert line.startswith("ofa-edge: error: gpu: m.onnx runs 0 of 2 nodes on CUDAExecutionProvider")
    res = run("bench", "partial", str(model), "--inventory", str(inv), "--runs", "3", "--json")
    assert res.returncode == 0, res.stderr
    bench = json.loads(res.stdout)
    assert bench["backend"]["providers"] == [{"name": "CUDAExecutionProvider"}]
    assert bench["backend"]["allow_partial"] is True
    assert bench["placement"]["by_provider"] == {"CPUExecutionProvider": 2}
    listed = json.loads(run("devices", "list", "--inventory", str(inv), "--json").stdout)
    assert [d["backend"]["providers"][0]["name"] for d in listed["devices"]] == [
        "CUDAExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
