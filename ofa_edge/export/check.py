"""One checked export: extract a subnet, recalibrate BN, convert, quantize, verify, then write.

Nothing is written under the requested name until every check passed: the fp32 model must
compute what torch computes (max |difference| of the logits on real images), and a lowered model
(fp16 or int8) must keep top-1 accuracy on labelled validation images within ``max_top1_drop``
points of fp32. Without labels (e.g. random-weight supernets, whose accuracy means nothing) the
lowered model's top-1 agreement with fp32 and its logit SNR are measured and reported;
``min_agreement`` turns agreement into a check. A failed check is an ``ExportCheckError``
carrying the numbers. Beside the model goes its export record ``MODEL.export.json`` (supernet,
arch, precision, sha256, checks), which ``ofa-edge push`` reads.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ofa_edge.convert.formats import FORMATS, convert, quantize
from ofa_edge.convert.onnx import run_onnx
from ofa_edge.convert.tflite import run_tflite
from ofa_edge.devices.spec import PRECISIONS
from ofa_edge.errors import ConfigError, ExportCheckError
from ofa_edge.export.images import prepare_images
from ofa_edge.export.record import RECORD_KIND, RECORD_VERSION, record_path, write_record
from ofa_edge.files import sha256_file
from ofa_edge.supernet.bn import recalibrate_bn
from ofa_edge.supernet.family import Arch
from ofa_edge.supernet.preprocessing import Preprocessing
from ofa_edge.supernet.registry import get_supernet_info

#: Max |exported - torch| allowed on fp32 logits: 40x the largest difference measured here
#: (2.3e-5; ofa-mbv3-cifar10 subnets @24-32 and MIT's w1.0 min @160 / max @224 with random
#: weights and recalibrated BN, a trained subnet: 1.4e-6 to 2.3e-5, ONNX and TFLite alike).
FP32_TOLERANCE = 1e-3
#: Images per forward pass for BN recalibration and the torch reference.
BATCH = 64
#: Images used for the fp32 comparison (the int8 checks use every validation image).
FP32_CHECK_IMAGES = 16


#: ``ExportReport`` fields grouped under "checks" in the export record (record version 2 named
#: the lowered model's fields ``agreement``, ``top1``...; version 1 had ``int8_agreement``...).
CHECK_FIELDS = (
    "fp32_max_abs_diff",
    "fp32_tolerance",
    "check_images",
    "agreement",
    "logit_snr_db",
    "fp32_top1",
    "top1",
    "top1_drop",
    "precision_check",
)


@dataclass
class ExportReport:
    """What was written and how it was checked (times in seconds, sizes in bytes)."""

    path: str
    format: str
    precision: str
    supernet: str | None
    arch: dict[str, Any] | None
    input_shape: list[int]
    sha256: str
    size_bytes: int
    fp32_max_abs_diff: float
    fp32_tolerance: float
    check_images: int
    # The lowered (fp16 or int8) model against fp32; None for an fp32 export.
    agreement: float | None = None
    logit_snr_db: float | None = None
    fp32_top1: float | None = None
    top1: float | None = None
    top1_drop: float | None = None
    precision_check: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: MIT's specialized net exported (its id or folder) when the model is no supernet's subnet.
    specialized: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The export record (also the CLI's ``--json`` document): what the file is, and its checks."""
        doc = asdict(self)
        checks = {k: doc.pop(k) for k in CHECK_FIELDS}
        return {"schema_version": RECORD_VERSION, "kind": RECORD_KIND, **doc, "checks": checks}


def run_model(path: Path, x: np.ndarray) -> np.ndarray:
    """Outputs of an .onnx or .tflite file on a channels-first float batch."""
    if path.suffix == ".onnx":
        return run_onnx(path, x)
    return run_tflite(path, x)


def _snr_db(reference: np.ndarray, got: np.ndarray) -> float:
    noise = float(((got - reference) ** 2).sum())
    return float("inf") if noise == 0 else 10 * float(np.log10(float((reference**2).sum()) / noise))


def export_subnet(
    supernet: Any,
    supernet_id: str,
    arch: Arch,
    fmt: str,
    precision: str,
    calib_images: np.ndarray,
    out: str | Path,
    **checks: Any,
) -> ExportReport:
    """Extract ``arch`` from ``supernet``, recalibrate its BN on ``calib_images``, export and check.

    ``calib_images`` are uint8 N x H x W x 3, normalized as the registry says ``supernet_id``'s
    images are; ``checks`` are ``export_model``'s keywords (validation images and labels,
    tolerances). Returns the report of the file written at ``out``.
    """
    start = time.perf_counter()
    arch = arch.validate(supernet.space)
    _check_target(fmt, precision, Path(out), calib_images)
    preprocessing = get_supernet_info(supernet_id).preprocessing
    supernet.set_arch(arch)
    subnet = supernet.get_active_subnet(preserve_weight=True)
    calib = torch.from_numpy(prepare_images(calib_images, arch.r, preprocessing))
    recalibrate_bn(subnet, calib.split(BATCH), max_images=len(calib))
    extract_s = time.perf_counter() - start
    report = export_model(
        subnet.eval(),
        arch.r,
        fmt,
        precision,
        calib_images,
        out,
        preprocessing=preprocessing,
        supernet=supernet_id,
        arch=arch.to_dict(),
        **checks,
    )
    report.timings = {"extract_s": extract_s, **report.timings}
    return report


def _check_target(fmt: str, precision: str, out: Path, calib_images: np.ndarray) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
    if out.suffix != f".{fmt}":
        raise ConfigError(f"{out}: a {fmt} model's file name must end in .{fmt}", hint=f"e.g. model.{fmt}")
    if len(calib_images) == 0:
        raise ConfigError("no calibration images", hint="BN recalibration and int8 need a few hundred")


def export_model(
    model: torch.nn.Module,
    resolution: int,
    fmt: str,
    precision: str,
    calib_images: np.ndarray,
    out: str | Path,
    *,
    preprocessing: Preprocessing,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    fp32_tolerance: float = FP32_TOLERANCE,
    max_top1_drop: float = 1.0,
    min_agreement: float | None = None,
    supernet: str | None = None,
    arch: dict[str, Any] | None = None,
    specialized: str | None = None,
) -> ExportReport:
    """Export a static image classifier (eval mode, BN ready) to ``out`` and check it first.

    ``precision`` is fp32, fp16 or int8; ``calib_images`` calibrate int8; ``val_images``
    (optionally with ``val_labels``) check the result, else the calibration images do (all uint8
    N x H x W x 3, normalized with ``preprocessing``, the statistics the model was trained with).
    Raises ``ExportCheckError`` with the numbers, leaving nothing at ``out``, when a check fails.
    """
    out = Path(out)
    _check_target(fmt, precision, out, calib_images)
    if val_labels is not None and (val_images is None or len(val_labels) != len(val_images)):
        raise ConfigError("val_labels must label every validation image", hint="pass val_images too")
    timings: dict[str, float] = {}
    calib = prepare_images(calib_images, resolution, preprocessing)
    check = prepare_images(val_images, resolution, preprocessing) if val_images is not None else calib
    with torch.no_grad():
        expected = torch.cat([model(b) for b in torch.from_numpy(check).split(BATCH)]).numpy()

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        fp32_path = Path(tmp) / f"fp32.{fmt}"
        start = time.perf_counter()
        convert(model, resolution, fmt, fp32_path)
        timings["convert_s"] = time.perf_counter() - start

        start = time.perf_counter()
        n = min(FP32_CHECK_IMAGES, len(check))
        diff = float(np.abs(run_model(fp32_path, check[:n]) - expected[:n]).max())
        if not diff <= fp32_tolerance:
            raise ExportCheckError(
                f"{fmt} fp32 model{f' of {arch}' if arch else ''} differs from torch by up to {diff:.3g} "
                f"(tolerance {fp32_tolerance:g}) on {n} images; not written to {out}",
                hint="report this with the arch and the converter versions",
            )
        timings["check_fp32_s"] = time.perf_counter() - start
        report = ExportReport(
            path=str(out),
            format=fmt,
            precision=precision,
            supernet=supernet,
            arch=arch,
            input_shape=[1, 3, resolution, resolution] if fmt == "onnx" else [1, resolution, resolution, 3],
            sha256="",
            size_bytes=0,
            fp32_max_abs_diff=diff,
            fp32_tolerance=fp32_tolerance,
            check_images=n,
            timings=timings,
            specialized=specialized,
        )
        final = fp32_path
        if precision != "fp32":
            final = Path(tmp) / f"{precision}.{fmt}"
            start = time.perf_counter()
            quantize(fp32_path, final, fmt, precision, calib)
            timings["quantize_s"] = time.perf_counter() - start
            start = time.perf_counter()
            _check_lowered(
                report, run_model(final, check), expected, val_labels, max_top1_drop, min_agreement
            )
            timings[f"check_{precision}_s"] = time.perf_counter() - start
        report.sha256 = sha256_file(final)
        report.size_bytes = final.stat().st_size
        record = Path(tmp) / "record.json"
        write_record(record, report.to_dict())
        # An old record goes first: a crash between the renames leaves a model with no record,
        # never a record describing another model.
        record_path(out).unlink(missing_ok=True)
        os.replace(final, out)
        os.replace(record, record_path(out))
    return report


def _check_lowered(
    report: ExportReport,
    got: np.ndarray,
    expected: np.ndarray,
    labels: np.ndarray | None,
    max_top1_drop: float,
    min_agreement: float | None,
) -> None:
    """Fill the lowered model's fields of ``report`` (its precision's outputs ``got`` against
    fp32's ``expected``); raise if accuracy drops or agreement is too low."""
    report.check_images = len(got)
    report.agreement = float((got.argmax(1) == expected.argmax(1)).mean())
    report.logit_snr_db = _snr_db(expected, got)
    where = f"on {len(got)} images; not written to {report.path}"
    fix = "calibrate on more (and more typical) images, or ship the fp32 model"
    if report.precision == "fp16":
        fix = "ship the fp32 model (fp16 weights lose this subnet's accuracy)"
    if labels is not None:
        report.fp32_top1 = 100 * float((expected.argmax(1) == labels).mean())
        report.top1 = 100 * float((got.argmax(1) == labels).mean())
        report.top1_drop = report.fp32_top1 - report.top1
        if report.top1_drop > max_top1_drop:
            raise ExportCheckError(
                f"{report.precision} top-1 {report.top1:.2f}% is {report.top1_drop:.2f} points below "
                f"fp32 {report.fp32_top1:.2f}% (allowed {max_top1_drop:g}) {where}",
                hint=fix,
            )
    if min_agreement is not None and report.agreement < min_agreement:
        raise ExportCheckError(
            f"{report.precision} top-1 agrees with fp32 on {100 * report.agreement:.1f}% of images "
            f"(required {100 * min_agreement:.1f}%) {where}",
            hint=fix,
        )
    report.precision_check = (
        f"top-1 drop ≤ {max_top1_drop:g} points" if labels is not None else "agreement reported, no labels"
    )
    if min_agreement is not None:
        report.precision_check += f"; agreement ≥ {100 * min_agreement:g}%"
