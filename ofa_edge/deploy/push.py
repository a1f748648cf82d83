"""Pushing a model file to a device, verifying it there, and recording the deployment.

The file goes to the device named by its content, its sha256 is computed on the device and must
equal the local one (a corrupted transfer is an error, not a warning), then it is measured
through the device's session. When the file's export record names its subnet and a latency
table for that device, runtime and precision exists, the measurement is compared with the
table's prediction, both at the table's reference speed (``ofa_edge.measure.timing``), and a miss
above 10 % is flagged. Verifying also runs the record's subnet on check images (the shipped
labelled calibration images, preprocessed as its supernet's) on the device and here, with the
same code (the agent's ``predict``), and compares: fp32 logits within ``FP32_LOGIT_TOLERANCE``,
fp16 and int8 top-1 within ``LOWERED_TOP1_POINTS``; so a device whose CPU or runtime computes the model
differently is caught. Everything lands in a deployment manifest (JSON)::

    {"schema_version": 3, "kind": "ofa-edge/deployment", "created": ISO-8601,
     "device": {"name", "fingerprint"}, "file": {"local", "remote", "sha256", "bytes",
     "format", "precision"}, "backend": {...}, "placement": {...} | null,
     "supernet": ID | null, "arch": {...} | null,
     "verified": bool, "measured_ms" | null, "predicted_ms" | null, "miss_pct" | null,
     "flagged": bool, "table": PATH | null, "checks": {...} | null,
     "outputs": {"images", "max_abs_diff", "agreement", "host_top1", "device_top1",
                 "tolerance", "ok"} | null}

Schema 2 added ``outputs`` (null where the session cannot feed inputs, e.g. ``benchmark_model``,
or the record names no subnet of a supernet the registry knows). Schema 3 added ``backend``, what
the model was measured on (``ofa_edge.devices.backend.Backend.to_dict``: runtime, providers or
delegate, the accelerator's precision), and ``placement``, where its nodes ran when it was
measured on its own on a backend with an accelerator (null otherwise; a model not wholly there is
refused unless the backend allows partial placement). A table measured on another backend is
refused, never compared with.

With a table, ``measured_ms`` is at the table's reference speed (comparable with its prediction);
without one it is the plain median.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ofa_edge.devices.backend import Backend, Placement
from ofa_edge.devices.session import MeasuringSession
from ofa_edge.devices.spec import DeviceSpec, device_runtime
from ofa_edge.errors import ConfigError, DeployError, LutError, OfaEdgeError, UnknownName
from ofa_edge.files import sha256_file, write_json
from ofa_edge.lut.store import find_table
from ofa_edge.lut.table import DeviceRecord, LatencyTable, now
from ofa_edge.lut.validate import timed_at_table_speed

SCHEMA_VERSION = 3
KIND = "ofa-edge/deployment"
MISS_TOLERANCE = 0.10
#: Check images run on the device and here when verifying (the first of the shipped set).
CHECK_IMAGES = 200
#: fp32 logits may differ this much between two CPUs (other kernels sum in other orders).
FP32_LOGIT_TOLERANCE = 1e-3
#: fp16 and int8 top-1 (percentage points) may differ this much: other kernels round differently,
#: and an fp16 model computes in half precision on some CPUs and GPUs, in float on others.
LOWERED_TOP1_POINTS = 0.5


@dataclass(frozen=True)
class OutputCheck:
    """The same model on the device and here, on the same check images."""

    images: int
    max_abs_diff: float  # largest difference of one output value
    agreement: float  # share of images whose top-1 class is the same on both
    host_top1: float  # top-1 (%) against the images' labels
    device_top1: float
    tolerance: str
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_outputs(
    session: MeasuringSession, model: Path, arch: dict[str, Any], supernet: str, precision: str, images: int
) -> OutputCheck | None:
    """Run ``model`` (``arch``, as its export record holds it, of ``supernet``) on ``images`` check
    images on the device and here; None where the session cannot feed inputs (``benchmark_model``)
    or the registry does not know ``supernet`` (its preprocessing is then unknown)."""
    from ofa_edge.convert.tflite import to_model_layout
    from ofa_edge.export.check import run_model
    from ofa_edge.export.images import default_calibration, prepare_images
    from ofa_edge.supernet.registry import get_supernet_info

    try:
        info = get_supernet_info(supernet)
    except UnknownName:
        return None
    with np.load(default_calibration()) as shipped:
        pictures, labels = shipped["images"][:images], shipped["labels"][:images]
    x = prepare_images(pictures, info.spec.arch_from_dict(arch).r, info.preprocessing)
    device = session.predict(model, to_model_layout(x) if model.suffix == ".tflite" else x)
    if device is None:
        return None
    host = run_model(model, x)
    host_top1, device_top1 = (100 * float((y.argmax(1) == labels).mean()) for y in (host, device))
    max_diff = float(np.abs(host - device).max())
    if precision != "fp32":
        ok = abs(host_top1 - device_top1) <= LOWERED_TOP1_POINTS
        tolerance = f"top-1 within {LOWERED_TOP1_POINTS} points"
    else:
        tolerance, ok = f"outputs within {FP32_LOGIT_TOLERANCE:g}", max_diff <= FP32_LOGIT_TOLERANCE
    agreement = float((host.argmax(1) == device.argmax(1)).mean())
    return OutputCheck(len(x), max_diff, agreement, host_top1, device_top1, tolerance, ok)


@dataclass(frozen=True)
class PushedFile:
    """The model file pushed: where it is here and on the device, and what it is."""

    local: str
    remote: str
    sha256: str  # computed on the device, equal to the local one
    size_bytes: int
    format: str  # "onnx" | "tflite"
    precision: str  # "fp32" | "fp16" | "int8"

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
    backend: Backend
    placement: Placement | None  # where its nodes ran, when measured on its own on an accelerator
    supernet: str | None
    arch: dict[str, Any] | None  # as the export record holds it (its family's keys)
    verified: bool
    measured_ms: float | None
    predicted_ms: float | None
    miss_pct: float | None
    flagged: bool  # missed the prediction by more than MISS_TOLERANCE
    table: str | None  # the table compared with
    checks: dict[str, Any] | None  # the export's checks, as its record states them
    outputs: OutputCheck | None  # the device's outputs against this host's
    manifest: Path  # where the manifest was written

    def manifest_dict(self) -> dict[str, Any]:
        """The manifest file's document."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "created": self.created,
            "device": self.device.to_dict(),
            "file": self.file.to_dict(),
            "backend": self.backend.to_dict(),
            "placement": self.placement.to_dict() if self.placement else None,
            "supernet": self.supernet,
            "arch": self.arch,
            "verified": self.verified,
            "measured_ms": self.measured_ms,
            "predicted_ms": self.predicted_ms,
            "miss_pct": self.miss_pct,
            "flagged": self.flagged,
            "table": self.table,
            "checks": self.checks,
            "outputs": self.outputs.to_dict() if self.outputs else None,
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


def default_manifest(model: Path) -> Path:
    """Where a push of ``model`` writes its manifest unless told: ``<model>.deployment.json``."""
    return model.with_name(model.name + ".deployment.json")


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
    check_images: int = CHECK_IMAGES,
) -> Deployment:
    """Push ``model`` and check its sha256 on the device; with ``verify``, also measure it there
    and compare with ``table``'s prediction, and compare its outputs on ``check_images`` images
    with this host's (when the record names the subnet).

    ``record`` is the model's export record (arch, supernet, precision, checks). Returns the
    deployment, its manifest also written to ``manifest`` (default: ``<model>.deployment.json``).
    """
    model = Path(model)
    if not model.is_file():
        raise ConfigError(f"model {model} does not exist", hint="export one with `ofa-edge export`")
    runtime = device_runtime(session.spec, model)
    record = record or {}
    precision = record.get("precision", "fp32")
    digest = sha256_file(model)
    try:
        remote = session.push_model(model)  # puts, then compares the device's sha256 with ours
    except OfaEdgeError as err:
        name = session.spec.name
        raise DeployError(f"{name}: push of {model.name} failed: {err.message}", hint=err.hint) from None
    arch = record.get("arch") or None
    usable = (
        table is not None
        and arch is not None
        and table.reference is not None
        and table.runtime.name == runtime
        and table.precision == precision
        and table.supernet.id == record.get("supernet")
    )
    measured = predicted = placement = None
    if not verify:
        pass
    elif usable:
        assert table is not None and arch is not None
        ms = timed_at_table_speed(session, table, [model], rounds=rounds)
        measured, predicted = ms[model.name], table.predict(table.spec.arch_from_dict(arch))
    else:
        threads = table.threads if table else None
        result = session.bench([model], runtime=runtime, threads=threads, min_runs=30).results[0]
        if result.error is not None or result.median_ms is None:
            raise DeployError(
                f"{session.spec.name}: {model.name} arrived intact but failed to run: {result.error}"
            )
        measured, placement = result.median_ms, result.placement
    miss = None if predicted is None or measured is None else (measured - predicted) / predicted
    outputs = None
    if verify and arch is not None and record.get("supernet") and check_images > 0:
        outputs = compare_outputs(session, model, arch, record["supernet"], precision, check_images)
    out = manifest or default_manifest(model)
    deployment = Deployment(
        created=now(),
        device=DeviceRecord(session.spec.name, session.fingerprint()),
        file=PushedFile(
            str(model.resolve()), remote, digest, model.stat().st_size, model.suffix.lstrip("."), precision
        ),
        backend=session.spec.backend_for(runtime),
        placement=placement,
        supernet=record.get("supernet"),
        arch=arch,
        verified=verify,
        measured_ms=measured,
        predicted_ms=predicted,
        miss_pct=None if miss is None else 100 * miss,
        flagged=miss is not None and abs(miss) > MISS_TOLERANCE,
        table=str(table_path) if verify and usable and table_path else None,
        checks=record.get("checks"),
        outputs=outputs,
        manifest=out,
    )
    doc = deployment.manifest_dict()
    write_json(out, doc)
    return deployment
