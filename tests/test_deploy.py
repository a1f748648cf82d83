"""Pushing models to devices: checked on arrival, measured, compared with the table, recorded."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ofa_edge.deploy.push import DeployError, push
from ofa_edge.devices.agent import AgentSession
from ofa_edge.errors import ConfigError
from ofa_edge.export.record import export_record, record_path, write_record
from ofa_edge.lut.build import build_table
from ofa_edge.lut.keys import subnet_ops
from ofa_edge.lut.table import SupernetRef
from ofa_edge.measure.models import export_subnets
from ofa_edge.supernet.space import SearchSpace
from ofa_edge.supernet.spec import MBv3Spec

SPACE = SearchSpace(resolutions=(32,))
SUPERNET = SupernetRef("tiny-test", MBv3Spec(0.35, 10, SPACE))
FAST = {"min_runs": 3, "min_seconds": 0.0, "batch_size": 16, "passes": 1}


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    """A subnet's ONNX file with the export record beside it."""
    arch = SPACE.min_arch(32)
    (model,) = export_subnets(MBv3Spec(0.35, 10, SPACE), [arch], tmp_path)
    record = {"supernet": "tiny-test", "arch": arch.to_dict(), "precision": "fp32", "checks": {"ok": True}}
    write_record(record_path(model), record)
    return model


def test_push_verify_on_an_ssh_device_compares_with_the_table(
    ssh_device, exported: Path, tmp_path: Path
) -> None:
    spec = ssh_device.device_spec("jetson")
    with AgentSession(spec) as session:
        table_path = tmp_path / "lut.json"
        table = build_table(session, SUPERNET, [32], table_path, **FAST)
        dep = push(
            session, exported, table=table, table_path=table_path, record=export_record(exported), rounds=1
        )
        remote_digest = session.transport.sha256(dep.file.remote)
    assert remote_digest == dep.file.sha256
    assert dep.verified and dep.measured_ms and dep.measured_ms > 0
    assert dep.predicted_ms == table.predict(SPACE.min_arch(32)) and dep.arch == SPACE.min_arch(32).to_dict()
    manifest = json.loads(dep.manifest.read_text())
    assert {
        **manifest,
        "manifest": str(dep.manifest),
    } == dep.to_dict()  # push --json: the manifest and its path
    assert manifest["kind"] == "ofa-edge/deployment" and manifest["device"]["fingerprint"]["cores"]
    assert manifest["checks"] == {"ok": True} and manifest["table"] == str(table_path)


def write_table(path: Path, level_ms: float, predicted_ms: float) -> None:
    """A latency table file (schema 6) of ``SPACE`` at reference level ``level_ms`` that predicts
    ``predicted_ms`` for the smallest subnet at r=32 (its ops share it equally; no calibration)."""
    ops = subnet_ops(MBv3Spec(0.35, 10, SPACE), SPACE.min_arch(32))
    reference = {"model": "min subnet @ 32px (onnx fp32)", "resolution": 32, "median_ms": level_ms}
    doc = {
        "schema_version": 6,
        "kind": "ofa-edge/latency-table",
        "supernet": SUPERNET.to_dict(),
        "device": {"name": "local"},
        "runtime": {"name": "onnxruntime"},
        "precision": "fp32",
        "threads": 1,
        "calibration": None,
        "reference": {**reference, "measured": "2026-01-01T00:00:00+00:00"},
        "entries": {"32": {op.key: {"median_ms": predicted_ms / len(ops)} for op in ops}},
    }
    path.write_text(json.dumps(doc))


def test_push_verify_flags_a_table_that_mispredicts(exported: Path, tmp_path: Path) -> None:
    """The pushed model is the table's own reference model (the smallest subnet at the reference
    resolution), so the device measures it at the table's reference level: a table predicting
    that level is honest, one predicting half of it (the device then measures about 2x the
    prediction) or twice it is off by far more than 10 % and must be flagged."""
    level = 2.0
    env = {k: v for k, v in os.environ.items() if k != "OFA_EDGE_INVENTORY"}  # only `local`
    results = {}
    for name, scale in (("honest", 1.0), ("half", 0.5), ("double", 2.0)):
        lut = tmp_path / f"{name}.json"
        write_table(lut, level, scale * level)
        manifest = tmp_path / f"{name}.deployment.json"
        res = subprocess.run(
            [sys.executable, "-m", "ofa_edge.cli.main", *(["--json"] if name != "half" else []),
             "push", "local", str(exported), "--verify", "--lut", str(lut), "--manifest", str(manifest)],
            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        results[name] = (json.loads(manifest.read_text()), res.stdout)
    for name, (doc, _) in results.items():
        assert doc["predicted_ms"] == pytest.approx({"honest": 1, "half": 0.5, "double": 2}[name] * level)
        assert doc["table"] is not None and doc["measured_ms"] > 0
    honest, half, double = (results[n][0] for n in ("honest", "half", "double"))
    assert not honest["flagged"], f"an honest table was flagged: {honest['miss_pct']:+.1f} %"
    assert half["flagged"] and 50 < half["miss_pct"] < 200, half["miss_pct"]
    assert double["flagged"] and -75 < double["miss_pct"] < -25, double["miss_pct"]
    assert "MISSED by more than 10 %" in results["half"][1]
    assert json.loads(results["honest"][1])["flagged"] is False


def test_corrupted_transfer_is_detected(adb_spec, phone, exported: Path) -> None:
    with AgentSession(adb_spec) as session:
        phone.corrupt_pushes = 1  # after the agent itself was deployed
        with pytest.raises(DeployError, match="arrived corrupted"):
            push(session, exported, verify=False)
    assert phone.corrupt_pushes == 0, "the fault really was injected into the model's transfer"
    assert not exported.with_name(exported.name + ".deployment.json").exists()


def test_push_without_a_table_measures_and_records(adb_spec, exported: Path) -> None:
    # The phone double's shell runs this machine's programs: give its agent our interpreter.
    with AgentSession(dataclasses.replace(adb_spec, python=sys.executable)) as session:
        dep = push(session, exported, record=export_record(exported))
    assert dep.measured_ms and dep.measured_ms > 0 and dep.predicted_ms is None and not dep.flagged
    manifest = json.loads(dep.manifest.read_text())
    assert manifest["schema_version"] == 3 and manifest["placement"] is None
    assert manifest["backend"] == {
        "runtime": "onnxruntime",
        "providers": [{"name": "CPUExecutionProvider"}],
        "precision": "fp32",
        "allow_partial": False,
    }


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model .*missing.onnx does not exist"):
        push(None, tmp_path / "missing.onnx")  # type: ignore[arg-type]


def test_push_verify_judges_an_fp16_model_by_its_top1(tmp_path: Path) -> None:
    """An fp16 model's outputs move by ~1e-3 from fp32's, so verifying it compares top-1 (as for
    int8), not fp32's logit tolerance; the manifest records the precision."""
    from ofa_edge.devices.spec import local_device
    from ofa_edge.export.check import export_subnet
    from ofa_edge.export.images import default_calibration, load_images
    from ofa_edge.supernet.registry import CIFAR10_SUPERNET, load_supernet

    name = CIFAR10_SUPERNET.name
    net = load_supernet(name)
    arch = net.space.min_arch(24)
    images, _ = load_images(default_calibration(), 64, "train", arch.r)
    report = export_subnet(net, name, arch, "onnx", "fp16", images, tmp_path / "m.onnx")
    with AgentSession(local_device()) as session:
        dep = push(session, Path(report.path), record=report.to_dict(), rounds=1, check_images=50)
    assert dep.outputs is not None and dep.outputs.ok and dep.outputs.images == 50
    assert dep.outputs.tolerance == "top-1 within 0.5 points"
    assert json.loads(dep.manifest.read_text())["file"]["precision"] == "fp16"
