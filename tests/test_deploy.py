"""Pushing models to devices: checked on arrival, measured, compared with the table, recorded."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from ofa_edge.deploy.push import EXPORT_RECORD_SUFFIX, DeployError, export_record, push
from ofa_edge.devices.agent import AgentSession
from ofa_edge.errors import ConfigError
from ofa_edge.lut.build import build_table
from ofa_edge.lut.validate import export_subnets
from ofa_edge.supernet.space import SearchSpace
from ofa_edge.supernet.spec import MBv3Spec

SPACE = SearchSpace(resolutions=(32,))
SUPERNET = {"id": "tiny-test", "width_mult": 0.35, "n_classes": 10, "space": SPACE.to_dict()}
FAST = {"min_runs": 3, "min_seconds": 0.0, "batch_size": 16, "passes": 1}


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    """A subnet's ONNX file with the export record beside it."""
    arch = SPACE.min_arch(32)
    (model,) = export_subnets(MBv3Spec(0.35, 10, SPACE), [arch], tmp_path)
    record = {"supernet": "tiny-test", "arch": arch.to_dict(), "precision": "fp32", "checks": {"ok": True}}
    model.with_name(model.name + EXPORT_RECORD_SUFFIX).write_text(json.dumps(record))
    return model


def test_push_verify_on_an_ssh_device_compares_with_the_table(
    ssh_device, exported: Path, tmp_path: Path
) -> None:
    spec = ssh_device.device_spec("jetson")
    with AgentSession(spec) as session:
        table_path = tmp_path / "lut.json"
        table = build_table(session, SUPERNET, [32], table_path, **FAST)
        doc = push(
            session, exported, table=table, table_path=table_path, record=export_record(exported), rounds=1
        )
        remote_digest = session.transport.sha256(doc["file"]["remote"])
    assert remote_digest == doc["file"]["sha256"]
    assert (
        doc["verified"]
        and doc["measured_ms"] > 0
        and doc["predicted_ms"] == table.predict(SPACE.min_arch(32))
    )
    assert doc["miss_pct"] == pytest.approx(100 * (doc["measured_ms"] / doc["predicted_ms"] - 1))
    assert doc["flagged"] == (abs(doc["miss_pct"]) > 10)
    manifest = json.loads(Path(doc["manifest"]).read_text())
    assert manifest["kind"] == "ofa-edge/deployment" and manifest["device"]["fingerprint"]["cores"]
    assert manifest["checks"] == {"ok": True} and manifest["table"] == str(table_path)


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
        doc = push(session, exported, record=export_record(exported))
    assert doc["measured_ms"] > 0 and doc["predicted_ms"] is None and not doc["flagged"]


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model .*missing.onnx does not exist"):
        push(None, tmp_path / "missing.onnx")  # type: ignore[arg-type]
