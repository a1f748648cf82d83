"""Checked export: subnets round-trip through ONNX and TFLite (fp32, int8) in the real runtimes,
failed checks write nothing, micro-models compute their torch op, and the CLI fails in one line."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from ofa_edge.data import ImageArray
from ofa_edge.errors import ConfigError
from ofa_edge.export.check import BATCH, ExportCheckError, export_subnet, run_model
from ofa_edge.export.images import prepare_images
from ofa_edge.export.record import record_path
from ofa_edge.lut.keys import subnet_ops
from ofa_edge.lut.micro import export_micro_models, input_shape, micro_path, op_module
from ofa_edge.supernet.bn import recalibrate_bn
from ofa_edge.supernet.counting import count
from ofa_edge.supernet.preprocessing import CIFAR10, IMAGENET, Preprocessing
from ofa_edge.supernet.registry import get_supernet_info, load_supernet
from ofa_edge.supernet.space import ArchConfig
from ofa_edge.supernet.spec import MBv3Spec
from tests.test_cli import DEBUG_HINT

SUPERNET = "ofa-mbv3-cifar10"


@pytest.fixture(scope="module")
def labelled() -> ImageArray:
    """The shipped calibration set: 1,000 labelled CIFAR-10 training images."""
    from ofa_edge.export.images import default_calibration

    with np.load(default_calibration()) as z:
        return ImageArray(z["images"], z["labels"], tuple(z["classes"]))


@pytest.fixture(scope="module")
def images(labelled: ImageArray) -> ImageArray:
    """164 of the shipped images: 64 to calibrate on, 100 to validate on."""
    return ImageArray(labelled.images[:164], labelled.labels[:164], labelled.classes)


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    """Torch on one thread: faster than two on this shared, loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def supernet() -> torch.nn.Module:
    torch.manual_seed(0)
    return get_supernet_info(SUPERNET).build().eval()


def reference(net: torch.nn.Module, arch: ArchConfig, calib: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Torch logits of the subnet, extracted and recalibrated here independently of the export."""
    net.set_arch(arch)
    sub = net.get_active_subnet()
    recalibrate_bn(sub, torch.from_numpy(prepare_images(calib, arch.r, CIFAR10)).split(BATCH))
    with torch.no_grad():
        return sub.eval()(torch.from_numpy(x)).numpy()


SUBNETS = [
    ArchConfig((3,) * 20, (3,) * 20, (2,) * 5, 24),
    ArchConfig((5, 7, 3, 5) * 5, (4, 6, 3, 6) * 5, (3, 2, 4, 2, 3), 32),
]


@pytest.mark.parametrize("arch", SUBNETS, ids=["min24", "mixed32"])
def test_onnx_round_trip(tmp_path: Path, images: ImageArray, arch: ArchConfig) -> None:
    calib, val = images.images[:64], images.images[64:]
    out = tmp_path / "model.onnx"
    report = export_subnet(supernet(), SUPERNET, arch, "onnx", "fp32", calib, out, val_images=val)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.export.json"]
    assert report.size_bytes == out.stat().st_size and len(report.sha256) == 64
    assert report.fp32_max_abs_diff < 1e-4 and report.input_shape == [1, 3, arch.r, arch.r]
    x = prepare_images(val[:8], arch.r, CIFAR10)
    assert "QuantizeLinear" not in {n.op_type for n in onnx.load(str(out)).graph.node}
    assert report.agreement is None and report.precision == "fp32"
    np.testing.assert_allclose(run_model(out, x), reference(supernet(), arch, calib, x), atol=1e-4)


def test_tflite_round_trip(tmp_path: Path, images: ImageArray) -> None:
    from ai_edge_litert.interpreter import Interpreter

    arch, calib, val = SUBNETS[0], images.images[:64], images.images[64:]
    out = tmp_path / "model.tflite"
    report = export_subnet(supernet(), SUPERNET, arch, "tflite", "fp32", calib, out, val_images=val)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite", "model.tflite.export.json"]
    assert report.fp32_max_abs_diff < 1e-4 and report.input_shape == [1, 24, 24, 3]
    detail = Interpreter(model_path=str(out)).get_input_details()[0]
    assert list(detail["shape"]) == [1, 24, 24, 3], "channels-last input"
    assert detail["dtype"] == np.float32
    assert report.size_bytes > 4 * count(supernet().spec, arch).params
    x = prepare_images(val[:8], arch.r, CIFAR10)
    np.testing.assert_allclose(run_model(out, x), reference(supernet(), arch, calib, x), atol=1e-4)


#: Images int8 is calibrated on (``--calib-images``' default); the other 744 validate.
CALIB = 256
#: Subnets of the shipped trained supernet: ONNX the largest at r=40 and the smallest at r=24 (with
#: every layer int8 the smallest dropped 1.48 points and agreed with fp32 on 86.8 % of images, the
#: largest on 92.6 %; see ``ofa_edge.convert.quantize``), TFLite the smallest (LiteRT runs the
#: largest's int8 model over 744 images in about a minute here, the smallest's in a second); fp16
#: the smallest in both formats.
LOWERED = [
    ("onnx", ArchConfig((7,) * 20, (6,) * 20, (4,) * 5, 40), "int8"),
    ("onnx", SUBNETS[0], "int8"),
    ("tflite", SUBNETS[0], "int8"),
    ("onnx", SUBNETS[0], "fp16"),
    ("tflite", SUBNETS[0], "fp16"),
]
#: Top-1 agreement with fp32 required: ONNX int8 96.8-98.5 % measured on 11 subnets; fp16 keeps
#: almost every prediction (its logits move by ~1e-3).
MIN_AGREEMENT = {("onnx", "int8"): 0.95, ("onnx", "fp16"): 0.99, ("tflite", "fp16"): 0.99}
#: Weight bytes per parameter, at most (fp32 has 4): int8 a quarter plus scales, fp16 a half.
MAX_BYTES_PER_PARAM = {"int8": 4 / 2.5, "fp16": 4 / 1.6}


def _lowered_weights(path: Path, precision: str) -> bool:
    """Whether the model file stores its weights in ``precision`` (int8: quantized ops too)."""
    if path.suffix == ".onnx":
        model = onnx.load(str(path))
        if precision == "int8":
            return "QuantizeLinear" in {n.op_type for n in model.graph.node}
        return {t.data_type for t in model.graph.initializer if len(t.dims) > 1} == {onnx.TensorProto.FLOAT16}
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    if precision == "int8":
        return interpreter.get_input_details()[0]["dtype"] == np.int8
    return interpreter.get_input_details()[0]["dtype"] == np.float32 and any(
        t["dtype"] == np.float16 for t in interpreter.get_tensor_details()
    )


@pytest.mark.parametrize(
    ("fmt", "arch", "precision"),
    LOWERED,
    ids=["onnx-max40-int8", "onnx-min24-int8", "tflite-min24-int8", "onnx-min24-fp16", "tflite-min24-fp16"],
)
def test_lowered_precision_keeps_the_trained_accuracy(
    tmp_path: Path, labelled: ImageArray, fmt: str, arch: ArchConfig, precision: str
) -> None:
    """fp16 or int8 of a subnet of the shipped trained supernet (int8 calibrated on 256 shipped
    labelled images) keeps top-1 on the other 744 within the promised 1 point of fp32: recounted
    here from the written file's outputs and an independent torch reference, so a garbage
    converter fails; the file really holds lowered weights, and is smaller for it."""
    out = tmp_path / f"model.{fmt}"
    calib, val, labels = labelled.images[:CALIB], labelled.images[CALIB:], labelled.labels[CALIB:]
    report = export_subnet(
        load_supernet(SUPERNET), SUPERNET, arch, fmt, precision, calib, out, val_images=val, val_labels=labels
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name, f"{out.name}.export.json"]
    x = prepare_images(val, arch.r, CIFAR10)
    expected = reference(load_supernet(SUPERNET), arch, calib, x)
    got = run_model(out, x)
    fp32 = 100 * float((expected.argmax(1) == labels).mean())
    lowered = 100 * float((got.argmax(1) == labels).mean())
    assert fp32 > 60, f"trained weights score far above chance (10 %), got {fp32:.2f} %"
    assert lowered >= fp32 - 1, f"{precision} top-1 {lowered:.2f} % vs fp32 {fp32:.2f} %"
    assert report.top1 == pytest.approx(lowered) and report.fp32_top1 == pytest.approx(fp32, abs=0.2)
    assert report.check_images == len(val) and report.precision_check == "top-1 drop ≤ 1 points"
    assert report.precision == precision and _lowered_weights(out, precision)
    assert report.size_bytes < MAX_BYTES_PER_PARAM[precision] * count(supernet().spec, arch).params
    if (fmt, precision) in MIN_AGREEMENT:
        assert report.agreement >= MIN_AGREEMENT[fmt, precision], "few of fp32's predictions flip"


def test_failed_checks_write_nothing(tmp_path: Path, images: ImageArray) -> None:
    arch, calib = SUBNETS[0], images.images[:50]
    out = tmp_path / "model.onnx"
    with pytest.raises(ExportCheckError, match=r"differs from torch by up to [0-9.e-]+ \(tolerance 0\)"):
        export_subnet(supernet(), SUPERNET, arch, "onnx", "fp32", calib, out, fp32_tolerance=0.0)
    with pytest.raises(ExportCheckError, match=r"points below fp32"):
        export_subnet(
            supernet(), SUPERNET, arch, "onnx", "int8", calib, out,
            val_images=images.images[64:], val_labels=images.labels[64:], max_top1_drop=-101,
        )  # fmt: skip
    with pytest.raises(ConfigError, match=r"must end in \.onnx"):
        export_subnet(supernet(), SUPERNET, arch, "onnx", "fp32", calib, tmp_path / "model.tflite")
    assert list(tmp_path.iterdir()) == []
    report = export_subnet(supernet(), SUPERNET, arch, "onnx", "int8", calib, out, min_agreement=0.0)
    assert report.check_images == len(calib) and report.fp32_top1 is None, "no labels: agreement only"
    assert report.precision_check == "agreement reported, no labels; agreement ≥ 0%"


def test_an_export_killed_between_its_renames_leaves_no_stale_record(
    tmp_path: Path, images: ImageArray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exporting over an earlier model: if the process dies after the model's rename, the old
    model's record is already gone, so no record ever describes another model."""
    calib, out = images.images[:32], tmp_path / "model.onnx"
    export_subnet(supernet(), SUPERNET, SUBNETS[0], "onnx", "fp32", calib, out)
    old_sha = hashlib.sha256(out.read_bytes()).hexdigest()
    os_replace = os.replace

    def dies_before_the_record(src: str | Path, dst: str | Path) -> None:
        if Path(dst) == record_path(out):
            raise KeyboardInterrupt  # the process dies between the model's and the record's rename
        os_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_before_the_record)
    with pytest.raises(KeyboardInterrupt):
        export_subnet(supernet(), SUPERNET, SUBNETS[1], "onnx", "fp32", calib, out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() != old_sha, "the new model is in place"
    assert not record_path(out).exists()


class _Converting(Exception):
    """Raised in place of conversion: the test looks only at what came before it."""


@pytest.mark.parametrize(
    ("name", "expected"),
    [("ofa_mbv3_d234_e346_k357_w1.0", IMAGENET), (SUPERNET, CIFAR10)],
    ids=["mit", "cifar"],
)
def test_export_normalizes_with_the_supernets_statistics(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, images: ImageArray, name: str, expected: Preprocessing
) -> None:
    """BN recalibration, int8 calibration and the checks of an export all see images normalized
    with the statistics of the supernet's registry entry: ImageNet's for MIT's."""
    import ofa_edge.export.check as check

    seen = []

    def spy(imgs: np.ndarray, resolution: int, preprocessing: Preprocessing) -> np.ndarray:
        seen.append(preprocessing)
        return prepare_images(imgs, resolution, preprocessing)

    def converting(*args: object) -> None:
        raise _Converting

    monkeypatch.setattr(check, "prepare_images", spy)
    monkeypatch.setattr(check, "convert", converting)
    net = get_supernet_info(name).build().eval()
    arch = net.space.min_arch(min(net.space.resolutions))
    calib, val = images.images[:8], images.images[8:12]
    with pytest.raises(_Converting):
        export_subnet(net, name, arch, "onnx", "int8", calib, tmp_path / "m.onnx", val_images=val)
    assert seen == [expected] * 3, "recalibration, calibration and check images"


def micro_ops() -> tuple[MBv3Spec, list]:
    """The first conv, a stride-2 SE block, a stride-1 residual block and the classifier."""
    spec = MBv3Spec(width_mult=0.5, n_classes=10)
    ops = subnet_ops(spec, ArchConfig((3,) * 20, (3,) * 20, (2,) * 5, 128))
    picks = [ops[0], next(o for o in ops if o.block and o.block.se and o.block.stride == 2)]
    picks += [next(o for o in ops if o.block and o.block.shortcut), ops[-1]]
    return spec, picks


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_micro_models_compute_their_op(fmt: str) -> None:
    spec, ops = micro_ops()
    paths = export_micro_models(spec, ops, fmt, "fp32")
    for op in ops:
        assert paths[op.key] == micro_path(op, fmt, "fp32") and paths[op.key].suffix == f".{fmt}"
        torch.manual_seed(0)
        module = op_module(spec, op).eval()
        x = torch.randn(input_shape(op), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = module(x).numpy()
        np.testing.assert_allclose(run_model(paths[op.key], x.numpy()), expected, atol=1e-4, err_msg=op.key)


@pytest.mark.parametrize("precision", ["int8", "fp16"])
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_lowered_micro_models(fmt: str, precision: str) -> None:
    spec, ops = micro_ops()
    op = ops[1]
    (path,) = export_micro_models(spec, [op], fmt, precision).values()
    assert path != micro_path(op, fmt, "fp32"), "precision is part of the cache key"
    x = np.random.default_rng(0).standard_normal(input_shape(op)).astype(np.float32)
    assert run_model(path, x).shape == (1, op.output[-1], *op.output[:2])
    assert _lowered_weights(path, precision)
    mtime = path.stat().st_mtime_ns
    assert export_micro_models(spec, [op], fmt, precision)[op.key].stat().st_mtime_ns == mtime, "cached"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the ofa-edge command in this process: (exit code, stdout, stderr)."""
    from ofa_edge.cli.main import main

    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, needle: str, exit_code: int) -> None:
    """One error line holding ``needle``, then the debug hint; exit ``exit_code``, no traceback."""
    assert code == exit_code and err.strip().splitlines()[1:] == [DEBUG_HINT], err
    assert needle in err.splitlines()[0] and "Traceback" not in err, err


def test_cli_exports_with_shipped_calibration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arch = tmp_path / "arch.json"
    SUBNETS[0].save(arch)
    out = tmp_path / "m.onnx"
    code, stdout, err = cli(capsys, "export", str(arch), "--supernet", SUPERNET, "--format", "onnx",
                            "--random-weights", "--calib-default", "--calib-images", "64", "--out", str(out),
                            "--json")  # fmt: skip
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["schema"] == "ofa-edge/export/1" and doc["precision"] == "fp32"
    assert doc["size_bytes"] == out.stat().st_size and doc["checks"]["fp32_max_abs_diff"] < 1e-4
    record = json.loads(record_path(out).read_text())
    assert {k: record[k] for k in ("supernet", "arch", "precision", "sha256")} == {
        "supernet": SUPERNET,
        "arch": SUBNETS[0].to_dict(),
        "precision": "fp32",
        "sha256": doc["sha256"],
    }


def test_cli_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    arch = tmp_path / "arch.json"
    SUBNETS[0].save(arch)
    base = ["export", "--supernet", SUPERNET, "--random-weights", "--calib-default"]
    code, _, err = cli(
        capsys, *base, str(tmp_path / "no.json"), "--format", "onnx", "--out", str(tmp_path / "m.onnx")
    )
    one_line_error(code, err, "cannot read arch file", 2)
    code, _, err = cli(capsys, *base, str(arch), "--format", "coreml", "--out", str(tmp_path / "m.onnx"))
    assert code == 2 and "invalid choice: 'coreml'" in err
    # A Python without the converter: importing it fails as a missing package's import does.
    monkeypatch.setitem(sys.modules, "litert_torch", None)
    code, _, err = cli(capsys, *base, str(arch), "--format", "tflite", "--out", str(tmp_path / "m.tflite"))
    one_line_error(code, err, "needs litert-torch, which is not installed", 8)
    assert "pip install" in err and list(tmp_path.iterdir()) == [arch]
