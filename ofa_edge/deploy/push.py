"""Pushing a model file to a device, verifying it there, and recording the deployment.

The file goes to the device named by its content, its sha256 is computed on the device and must
equal the local one (a corrupted transfer is an error, not a warning), then it is measured
through the device's session. When the file's export record names its subnet and a latency
table for that device, runtime and precision exists, the measurement is compared with the
table's prediction, both at the table's reference speed (``ofa_edge.measure.timing``), and a miss
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofa_edge.devices.session import MeasuringSession
from ofa_edge.devices.spec import DeviceSpec, model_runtime
from ofa_edge.errors import ConfigError, DeployError, LutError, OfaEdgeError
from ofa_edge.files import sha256_file, write_atomic
from ofa_edge.lut.store import find_table
from ofa_edge.lut.table import DeviceRecord, LatencyTable, now
from ofa_edge.lut.validate import timed_at_table_speed
from ofa_edge.supernet.space import ArchConfig

SCHEMA_VERSION = 1
KIND = "ofa-edge/deployment"
MISS_TOLERANCE = 0.10


@dataclass(frozen=True)
class PushedFile:
    """The model file pushed: where it is here and on the device, and what it is."""

    local: str
    remote: str
    sha256: str  # computed on the device, equal to the local one
    size_bytes: int
    format: str  # "onnx" | "tflite"
    precision: str  # "fp32" | "int8"

    def to_dict(self) -> dict[str, Any]:
        return {
            "local": self.local,
            "remote": self.remote,
            "sha256": self.sha256,
            "bytes": self.size_bytes,
            "format": self.format,
            "precision": self.precision,
        }


@dataclass(frozen=True)
class Deployment:
    """One push: the file, the device it went to, and how it ran there against the table's
    prediction (the module docstring describes the manifest it is written as)."""

    created: str  # ISO-8601
    device: DeviceRecord
    file: PushedFile
    supernet: str | None
    arch: ArchConfig | None
    verified: bool
    measured_ms: float | None
    predicted_ms: float | None
    miss_pct: float | None
    flagged: bool  # missed the prediction by more than MISS_TOLERANCE
    table: str | None  # the table compared with
    checks: dict[str, Any] | None  # the export's checks, as its record states them
    manifest: Path  # where the manifest was written

    def manifest_dict(self) -> dict[str, Any]:
        """The manifest file's document."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "created": self.created,
            "device": self.device.to_dict(),
            "file": self.file.to_dict(),
            "supernet": self.supernet,
            "arch": self.arch.to_dict() if self.arch else None,
            "verified": self.verified,
            "measured_ms": self.measured_ms,
            "predicted_ms": self.predicted_ms,
            "miss_pct": self.miss_pct,
            "flagged": self.flagged,
            "table": self.table,
            "checks": self.checks,
        }

    def to_dict(self) -> dict[str, Any]:
        """The manifest and where it is (``push --json``)."""
        return {**self.manifest_dict(), "manifest": str(self.manifest)}


def record_table(device: DeviceSpec, record: dict[str, Any] | None) -> Path | None:
    """The device's latency table for the model an export ``record`` describes (its supernet and
    precision, the device's threads), or None when it names no supernet or no table exists (a
    push then measures without a prediction to compare with)."""
    if not record or not record.get("supernet"):
        return None
    try:
        return find_table(
            device.name, record["supernet"], precision=record.get("precision", "fp32"), threads=device.threads
        )
    except LutError:
        return None


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
) -> Deployment:
    """Push ``model`` and check its sha256 on the device; with ``verify``, also measure it there
    and compare with ``table``'s prediction.

    ``record`` is the model's export record (arch, supernet, precision, checks). Returns the
    deployment, its manifest also written to ``manifest`` (default: ``<model>.deployment.json``).
    """
    model = Path(model)
    if not model.is_file():
        raise ConfigError(f"model {model} does not exist", hint="export one with `ofa-edge export`")
    runtime = model_runtime(model)
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
        and table.runtime.name == runtime
        and table.precision == precision
        and table.supernet.id == record.get("supernet")
    )
    measured = predicted = None
    if not verify:
        pass
    elif usable:
        assert table is not None and arch is not None
        ms = timed_at_table_speed(session, table, [model], rounds=rounds)
        measured, predicted = ms[model.name], table.predict(arch)
    else:
        result = session.bench([model], threads=table.threads if table else None, min_runs=30).results[0]
        if result.error is not None or result.median_ms is None:
            raise DeployError(
                f"{session.spec.name}: {model.name} arrived intact but failed to run: {result.error}"
            )
        measured = result.median_ms
    miss = None if predicted is None or measured is None else (measured - predicted) / predicted
    out = manifest or model.with_name(model.name + ".deployment.json")
    deployment = Deployment(
        created=now(),
        device=DeviceRecord(session.spec.name, session.fingerprint()),
        file=PushedFile(
            str(model.resolve()), remote, digest, model.stat().st_size, model.suffix.lstrip("."), precision
        ),
        supernet=record.get("supernet"),
        arch=arch,
        verified=verify,
        measured_ms=measured,
        predicted_ms=predicted,
        miss_pct=None if miss is None else 100 * miss,
        flagged=miss is not None and abs(miss) > MISS_TOLERANCE,
        table=str(table_path) if verify and usable and table_path else None,
        checks=record.get("checks"),
        manifest=out,
    )
    doc = deployment.manifest_dict()
    write_atomic(out, json.dumps(doc, indent=1) + "\n")
    return deployment
