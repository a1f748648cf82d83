"""Pushing a model file to a device, verifying it there, and recording the deployment.

The file goes to the device named by its content, its sha256 is computed on the device and must
equal the local one (a corrupted transfer is an error, not a warning), then it is measured
through the device's session. When the file's export record names its subnet and a latency
table for that device, runtime and precision exists, the measurement is compared with the
table's prediction, both at the table's reference speed (``ofa_edge.lut.timing``), and a miss
above 10 % is flagged. Everything lands in a deployment manifest (JSON)::

    {"schema_version": 1, "kind": "ofa-edge/deployment", "created": ISO-8601,
     "device": {"name", "fingerprint"}, "file": {"local", "remote", "sha256", "bytes",
     "format", "precision"}, "supernet": ID | null, "arch": {...} | null,
     "verified": bool, "measured_ms" | null, "predicted_ms" | null, "miss_pct" | null,
     "flagged": bool, "table": PATH | null, "checks": {...} | null}

With a table, ``measured_ms`` is at the table's reference speed (comparable with its prediction);
without one it is the plain median.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ofa_edge.devices.agent import MeasuringSession
from ofa_edge.errors import ConfigError, OfaEdgeError
from ofa_edge.files import sha256_file
from ofa_edge.lut.table import LatencyTable, now
from ofa_edge.supernet.space import ArchConfig

SCHEMA_VERSION = 1
KIND = "ofa-edge/deployment"
MISS_TOLERANCE = 0.10
#: Export writes ``FILE`` plus ``FILE`` + this suffix: what the file is (arch, supernet, checks).
EXPORT_RECORD_SUFFIX = ".export.json"
RUNTIME_OF_FORMAT = {".onnx": "onnxruntime", ".tflite": "tflite"}


class DeployError(OfaEdgeError, RuntimeError):
    """A push that did not arrive intact or could not be measured."""

    reference = "deploy-failed"


def export_record(model: Path) -> dict[str, Any] | None:
    """The export record beside ``model`` (written by ``ofa-edge export``), if there is one."""
    path = model.with_name(model.name + EXPORT_RECORD_SUFFIX)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"export record {path} is unreadable ({err})", hint="export the model again, or delete it"
        ) from None


def push(
    session: MeasuringSession,
    model: Path,
    *,
    table: LatencyTable | None = None,
    table_path: Path | None = None,
    record: dict[str, Any] | None = None,
    verify: bool = True,
    rounds: int = 3,
    manifest: Path | None = None,
) -> dict[str, Any]:
    """Push ``model`` and check its sha256 on the device; with ``verify``, also measure it there
    and compare with ``table``'s prediction.

    ``record`` is the model's export record (arch, supernet, precision, checks). Returns the
    deployment manifest, also written to ``manifest`` (default: ``<model>.deployment.json``).
    """
    from ofa_edge.lut.timing import table_reference, timed_rounds

    model = Path(model)
    if not model.is_file():
        raise ConfigError(f"model {model} does not exist", hint="export one with `ofa-edge export`")
    runtime = RUNTIME_OF_FORMAT.get(model.suffix)
    if runtime is None:
        raise ConfigError(f"{model}: unknown model format", hint="push a .onnx or .tflite file")
    record = record or {}
    precision = record.get("precision", "fp32")
    digest = sha256_file(model)
    try:
        remote = session.push_model(model)  # puts, then compares the device's sha256 with ours
    except OfaEdgeError as err:
        name = session.spec.name
        raise DeployError(f"{name}: push of {model.name} failed: {err.message}", hint=err.hint) from None
    arch = ArchConfig.from_dict(record["arch"]) if record.get("arch") else None
    usable = (
        table is not None
        and arch is not None
        and table.reference is not None
        and table.runtime.get("name") == runtime
        and table.precision == precision
        and table.supernet.get("id") == record.get("supernet")
    )
    measured = predicted = None
    if not verify:
        pass
    elif usable:
        assert table is not None and table.reference is not None and arch is not None
        reference = table_reference(table)
        ms, _ = timed_rounds(
            session,
            [model],
            reference,
            rounds=rounds,
            ref_ms=table.reference["median_ms"],
            threads=table.threads,
            min_runs=20,
            min_seconds=0.3,
        )
        measured, predicted = ms[model.name], table.predict(arch)
    else:
        result = session.bench([model], threads=table.threads if table else None, min_runs=30).results[0]
        if result.error is not None or result.median_ms is None:
            raise DeployError(
                f"{session.spec.name}: {model.name} arrived intact but failed to run: {result.error}"
            )
        measured = result.median_ms
    miss = None if predicted is None or measured is None else (measured - predicted) / predicted
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "created": now(),
        "device": {"name": session.spec.name, "fingerprint": session.fingerprint()},
        "file": {
            "local": str(model.resolve()),
            "remote": remote,
            "sha256": digest,
            "bytes": model.stat().st_size,
            "format": model.suffix.lstrip("."),
            "precision": precision,
        },
        "supernet": record.get("supernet"),
        "arch": arch.to_dict() if arch else None,
        "verified": verify,
        "measured_ms": measured,
        "predicted_ms": predicted,
        "miss_pct": None if miss is None else 100 * miss,
        "flagged": miss is not None and abs(miss) > MISS_TOLERANCE,
        "table": str(table_path) if verify and usable and table_path else None,
        "checks": record.get("checks"),
    }
    out = manifest or model.with_name(model.name + ".deployment.json")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, out)
    doc["manifest"] = str(out)
    return doc
