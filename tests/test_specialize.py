"""``specialize`` end to end on a test-bed SSH device: table, search, export, push, verify."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

from ofa_edge.accuracy.predictor import AccuracyPredictor, ArchEncoder, save_predictor
from ofa_edge.deploy.specialize import specialize, stale_reasons
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.lut.table import DeviceRecord, LatencyTable, Reference, Runtime, SupernetRef
from ofa_edge.search.evolution import InfeasibleError
from ofa_edge.supernet.registry import get_supernet_info
from ofa_edge.supernet.spec import MBv3Spec

SUPERNET = "ofa-mbv3-cifar10"


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Random supernet weights and a random predictor of the right shape (the job's mechanics
    do not depend on what they learned)."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    net = get_supernet_info(SUPERNET).build()
    torch.save(net.state_dict(), folder / "supernet.pt")
    predictor = AccuracyPredictor(ArchEncoder.for_space(net.space))
    return folder / "supernet.pt", save_predictor(predictor, folder / "predictor.pt", SUPERNET)


def _run(device: DeviceSpec, out: Path, weights: tuple[Path, Path], **kwargs) -> dict:
    stages: list[str] = []
    run = specialize(
        device,
        out,
        supernet=SUPERNET,
        resolutions=[24],
        checkpoint=weights[0],
        predictor=weights[1],
        validate_samples=6,
        passes=1,
        generations=30,
        stage=lambda name, message: stages.append(name),
        **kwargs,
    )
    summary = run.to_dict()
    assert json.loads(run.summary_file.read_text()) == {
        k: v for k, v in summary.items() if k != "summary_file"
    }
    assert run.choice.best.arch.to_dict() == summary["search"]["arch"]
    summary["stages"] = stages
    return summary


def test_specialize_on_an_ssh_device_then_reuse_the_table(ssh_device, weights, tmp_path: Path) -> None:
    jetson = ssh_device.device_spec("jetson")
    first = _run(jetson, tmp_path, weights)
    assert first["stages"][0] == "device" and first["stages"][-1] == "push"
    assert {"table", "search", "export"} <= set(first["stages"])
    low, high = first["search"]["reachable_ms"]
    assert first["search"]["budget_ms"] == pytest.approx((low + high) / 2)
    assert first["search"]["costs"]["latency on jetson"] <= first["search"]["budget_ms"]
    deployment = first["deployment"]
    assert deployment["file"]["sha256"] == first["export"]["sha256"]
    assert deployment["measured_ms"] > 0 and deployment["predicted_ms"] > 0
    assert (tmp_path / "pareto.png").is_file() and (tmp_path / "latency_fit.png").is_file()
    assert json.loads((tmp_path / "specialize.json").read_text())["cost"]["device_seconds"] > 0
    assert not first["table"]["reused"] and first["cost"]["energy_wh"] > 0

    second = _run(jetson, tmp_path, weights, latency_ms=high)
    assert second["table"]["reused"], "a calibrated table of the same device is measured once"
    assert second["cost"]["per_stage"]["device_s"].get("table") is None
    assert second["search"]["budget_ms"] == high

    with pytest.raises(InfeasibleError, match="below the smallest reachable"):
        _run(jetson, tmp_path, weights, latency_ms=low / 2)


def test_specialize_on_the_adb_phone(adb_spec: DeviceSpec, phone, weights, tmp_path: Path) -> None:
    # A phone with Python and onnxruntime (e.g. Termux); the double's shell runs our interpreter.
    spec = dataclasses.replace(adb_spec, python=sys.executable)
    summary = _run(spec, tmp_path, weights)
    remote = summary["deployment"]["file"]["remote"]
    assert remote.startswith(str(phone.sandbox)) and Path(remote).is_file(), "the model is on the phone"
    assert summary["deployment"]["measured_ms"] > 0
    assert summary["table"]["path"].endswith("fakephone_ofa-mbv3-cifar10_fp32_t1.json")


def test_a_table_of_another_cpu_is_stale(tmp_path: Path) -> None:
    reference = Reference("min subnet", 24, 1.0, "2026-01-01", [1.0], "interleaved")
    table = LatencyTable(
        supernet=SupernetRef(SUPERNET, MBv3Spec()),
        device=DeviceRecord("pi", {"arch": "aarch64", "cpu_model": "Cortex-A72", "cores": 4}),
        runtime=Runtime("onnxruntime", "1.31.1"),
        reference=reference,
    )
    same = {"arch": "aarch64", "cpu_model": "Cortex-A72", "cores": 4}
    assert stale_reasons(table, same, "1.31.1", "interleaved") == []
    reasons = stale_reasons(table, {**same, "cores": 2}, "1.32.0", "interleaved")
    assert reasons == ["cores was 4, now 2", "runtime version was 1.31.1, now 1.32.0"]
    table.reference = dataclasses.replace(reference, timing="bracketed")  # before interleaving existed
    (reason,) = stale_reasons(table, same, "1.31.1", "interleaved")
    assert "timed bracketed" in reason and "now times interleaved" in reason
