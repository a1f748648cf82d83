"""Accuracy measurement: resumable tables, the eval CLI, the weights release and calibration set."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from ofa_edge.accuracy.calibration import (
    calibration_and_validation,
    load_calibration_set,
    packaged_calibration_path,
)
from ofa_edge.accuracy.measure import CALIB_IMAGES, subnet_top1
from ofa_edge.accuracy.table import build_accuracy_table, read_table, sample_arch
from ofa_edge.data import ImageArray, batches
from ofa_edge.errors import CheckpointError, ConfigError
from ofa_edge.supernet.preprocessing import CIFAR10, IMAGENET, Preprocessing
from ofa_edge.supernet.registry import get_supernet_info, load_supernet
from ofa_edge.supernet.space import ArchConfig
from ofa_edge.training import Trainer, fit_config, load_recipe
from ofa_edge.training.release import load_weights, release_weights
from tests.test_cli import error_line

SUPERNET = "ofa-mbv3-cifar10"


def _images(n: int, seed: int = 0) -> ImageArray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return ImageArray(images, rng.integers(0, 10, n).astype(np.int64), tuple(str(i) for i in range(10)))


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Small nets on a busy machine run several times faster on one thread than on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return get_supernet_info(SUPERNET).build().eval()


def _build(net, path: Path, n: int, seed: int = 0, val: ImageArray | None = None, progress=None, workers=1):
    calib, val = _images(16, 1), _images(16, 2) if val is None else val
    return build_accuracy_table(
        net, SUPERNET, path, n, seed, calib=calib, val=val, progress=progress, workers=workers
    )


def test_subnet_top1_leaves_the_supernet_untouched(net) -> None:
    before = {k: v.clone() for k, v in net.state_dict().items()}
    arch = net.space.min_arch(24)
    first = subnet_top1(net, arch, _images(16, 1), _images(20, 2), CIFAR10, calib_count=8)
    assert first == subnet_top1(net, arch, _images(16, 1), _images(20, 2), CIFAR10, calib_count=8)
    assert 0 <= first <= 100 and (first * 20 / 100).is_integer()  # a count of 20 images
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_eval_and_tables_normalize_with_the_supernets_statistics(
    net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table of MIT's supernet measures its subnets on ImageNet-normalized images, and
    ``subnet_top1`` recalibrates BN and evaluates on images normalized as it is told."""
    import ofa_edge.accuracy.measure as measure
    import ofa_edge.accuracy.table as table

    batched = []

    def spy_batches(data: ImageArray, batch_size: int, preprocessing: Preprocessing, **kw):
        batched.append(preprocessing)
        return batches(data, batch_size, preprocessing, **kw)

    monkeypatch.setattr(measure, "batches", spy_batches)
    subnet_top1(net, net.space.min_arch(24), _images(8, 1), _images(8, 2), IMAGENET)
    assert batched == [IMAGENET, IMAGENET], "BN recalibration and evaluation"

    measured = []

    def spy_top1(net, arch, calib, val, preprocessing: Preprocessing, **kw) -> float:
        measured.append(preprocessing)
        return 50.0

    monkeypatch.setattr(table, "subnet_top1", spy_top1)
    mit = "ofa_mbv3_d234_e346_k357_w1.0"
    built = build_accuracy_table(
        get_supernet_info(mit).build(), mit, tmp_path / "t.jsonl", 2, calib=_images(4), val=_images(4)
    )
    assert measured == [IMAGENET, IMAGENET] and len(built.records) == 2


def test_table_resumes_without_losing_or_repeating(net, tmp_path: Path) -> None:
    path = tmp_path / "table.jsonl"
    seen: list[int] = []

    def interrupt_after_two(done: int, total: int) -> None:
        seen.append(done)
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _build(net, path, 5, progress=interrupt_after_two)
    assert seen == [0, 1, 2] and len(read_table(path).records) == 2
    first_lines = path.read_text().splitlines()
    with path.open("a") as f:
        f.write('{"index": 2, "arch": {"ks"')  # a write cut short by a kill
    assert len(read_table(path).records) == 2
    seen.clear()
    table = _build(net, path, 5, progress=lambda done, total: seen.append(done))
    assert seen == [2, 3, 4, 5]
    assert sorted(r.index for r in table.records) == [0, 1, 2, 3, 4]
    lines = path.read_text().splitlines()
    assert lines[:3] == first_lines and len(lines) == 6  # header + 5, old results kept as they were
    again = read_table(path)
    assert [r.to_dict() for r in again.records] == [r.to_dict() for r in table.records]
    space = net.space
    for r in again.records:
        assert r.arch == sample_arch(space, 0, r.index)
        assert r.arch.r == space.resolutions[r.index % len(space.resolutions)]
    assert len({r.arch for r in again.records}) == 5
    assert _build(net, path, 5).records == again.records  # complete: nothing measured again


def test_parallel_build_measures_the_same_subnets(net, tmp_path: Path) -> None:
    serial = _build(net, tmp_path / "serial.jsonl", 4)
    _build(net, tmp_path / "parallel.jsonl", 2, workers=2)  # then resumed by two workers
    seen: list[int] = []
    parallel = _build(net, tmp_path / "parallel.jsonl", 4, workers=2, progress=lambda d, t: seen.append(d))
    assert seen == [2, 3, 4]

    def by_index(table):
        return sorted(((r.index, r.arch, r.top1) for r in table.records), key=lambda t: t[0])

    assert by_index(parallel) == by_index(serial)
    assert by_index(read_table(tmp_path / "parallel.jsonl")) == by_index(serial)


_ORPHAN = """
import multiprocessing, time
from ofa_edge.accuracy.table import exit_with_parent

def child() -> None:
    exit_with_parent(0.1)
    time.sleep(120)

if __name__ == "__main__":
    worker = multiprocessing.get_context("spawn").Process(target=child)
    worker.start()
    print(worker.pid, flush=True)
    time.sleep(120)
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` is alive and not a zombie (nobody may reap an orphan here)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_a_pool_worker_ends_when_its_build_is_killed(tmp_path: Path) -> None:
    """Killing the build (SIGKILL, no cleanup) must not leave its workers computing for nobody."""
    (tmp_path / "orphan.py").write_text(_ORPHAN)
    script = [sys.executable, str(tmp_path / "orphan.py")]
    parent = subprocess.Popen(script, stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    try:
        assert _running(worker)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 15
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(worker), "the worker outlived its parent"
    finally:
        if _running(worker):
            os.kill(worker, signal.SIGKILL)


def test_mismatched_table_is_refused(net, tmp_path: Path) -> None:
    path = tmp_path / "table.jsonl"
    _build(net, path, 1)
    with pytest.raises(ConfigError, match="measured with another seed"):
        _build(net, path, 2, seed=1)
    with pytest.raises(ConfigError, match="measured on other validation images"):
        _build(net, path, 2, val=_images(16, 3))
    other = get_supernet_info(SUPERNET).build().eval()  # other random weights
    with pytest.raises(ConfigError, match="measured with another weights_sha256"):
        _build(other, path, 2)
    assert len(read_table(path).records) == 1
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"hello": 1}\n')
    with pytest.raises(ConfigError, match="is not an ofa-edge accuracy table"):
        _build(net, junk, 1)


def test_calibration_and_validation_split() -> None:
    train = _images(12_000)
    calib, val = calibration_and_validation(train)
    assert len(calib) == CALIB_IMAGES and len(val) == 1200  # a tenth (5,000 of CIFAR-10's 50,000)
    again, _ = calibration_and_validation(train)
    assert np.array_equal(calib.images, again.images)
    as_rows = lambda a: {bytes(x) for x in a.images.reshape(len(a), -1)}  # noqa: E731
    assert not as_rows(calib) & as_rows(val)  # never calibrate on held-out images
    small_calib, small_val = calibration_and_validation(_images(100))  # a tenth held out, the rest calibrates
    assert (len(small_calib), len(small_val)) == (90, 10)
    with pytest.raises(ConfigError, match="training split has 9 images"):
        calibration_and_validation(_images(9))


def test_packaged_calibration_set() -> None:
    path = packaged_calibration_path()
    assert path.stat().st_size <= 3_000_000
    calib = load_calibration_set()
    assert calib.images.shape == (CALIB_IMAGES, 32, 32, 3) and calib.images.dtype == np.uint8
    assert len(calib.classes) == 10 and set(calib.labels.tolist()) == set(range(10))
    assert 30 < calib.images.mean() < 220  # real photos, not an empty or constant array


#: Pure red, green and blue images: classes 0, 1 and 2 of the colour net. The folders sort in
#: that order, as ImageFolder classes are numbered.
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
COLOUR_CLASSES = ("a-red", "b-green", "c-blue")


@torch.no_grad()
def _colour_net() -> torch.nn.Module:
    """A test-made supernet whose every subnet tells red, green and blue pure-colour images apart.

    Channels 0-2 of every layer carry the three colour channels (identity 1x1 convs, centre-tap
    kxk and depthwise convs, SE gates fixed at 1), every other weight is 0, and the classifier
    reads channel k as class k. Over images of pure colours each carried channel takes two
    values (the image is of that colour or not), which every BN maps to 10 plus a positive or a
    negative number, whatever its statistics: so the subnet's answer is the image's colour.
    """
    net = get_supernet_info(SUPERNET).build().eval()
    for name, m in net.named_modules():
        if name.endswith(("se.fc.reduce", "se.fc.expand")):
            m.weight.zero_()
            m.bias.fill_(3.0 if name.endswith("expand") else 0.0)  # hardsigmoid(3) = 1
        elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            w = m.weight.view(m.weight.shape[0], m.weight.shape[1], -1).zero_()
            for k in range(3):
                w[k, 0 if getattr(m, "groups", 1) > 1 else k, w.shape[2] // 2] = 1.0
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.weight.fill_(1.0)
            m.bias.fill_(10.0)
    return net


def _colour_folder(root: Path, splits: dict[str, dict[tuple[int, int], int]]) -> Path:
    """An ImageFolder of pure-colour PNGs: ``splits[split][colour, folder]`` images of ``colour``
    filed under the class folder ``folder`` (a different one: a mislabelled image)."""
    from PIL import Image

    for split, counts in splits.items():
        for (colour, folder), n in counts.items():
            out = root / split / COLOUR_CLASSES[folder]
            out.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(np.full((32, 32, 3), COLOURS[colour])).save(out / f"{colour}-{i}.png")
    return root


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ofa_edge.cli.main", *args], capture_output=True, text=True, timeout=300
    )


def test_eval_top1_has_the_known_answer(tmp_path: Path) -> None:
    """7 of the 10 test images are filed under their own colour, so top-1 is exactly 70 %, in
    Python and through the CLI, with BN calibrated on train/ or (without it) on test/."""
    from ofa_edge.data import load_split

    train = {(c, c): 4 for c in range(3)}
    test = {(0, 0): 3, (0, 1): 1, (1, 1): 2, (1, 2): 1, (2, 2): 2, (2, 0): 1}
    data = _colour_folder(tmp_path / "ds", {"train": train, "test": test})
    net = _colour_net()
    weights = tmp_path / "w.pt"
    torch.save(net.state_dict(), weights)
    arch = ArchConfig(ks=(3, 5, 7, 3) * 5, e=(3, 4, 6, 4) * 5, d=(2, 3, 4, 2, 3), r=28)
    for a in (arch, net.space.min_arch(24), net.space.max_arch(40)):
        top1 = subnet_top1(net, a, load_split(data, "train"), load_split(data, "test"), CIFAR10)
        assert top1 == 70.0, (a, top1)
    arch.save(tmp_path / "arch.json")
    common = ["--supernet", SUPERNET, "--checkpoint", str(weights), "--host-threads", "1"]
    common += ["--arch", str(tmp_path / "arch.json")]
    res = _cli("--json", "eval", *common, "--data", str(data))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "ofa-edge/eval/1" and doc["images"] == 10 and doc["top1"] == 70.0
    assert doc["calibration"] == {"split": "train", "images": 12}

    only_test = tmp_path / "only-test"
    shutil.copytree(data / "test", only_test / "test")
    res = _cli("--json", "eval", *common, "--data", str(only_test))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["calibration"] == {"split": "test", "images": 10} and doc["top1"] == 70.0

    # A test split without the first class's folder is numbered by the training split's classes.
    shutil.rmtree(data / "test" / COLOUR_CLASSES[0])
    res = _cli("--json", "eval", *common, "--data", str(data))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["top1"] == 100 * 4 / 6  # 4 of the 6 left are filed under their colour

    res = _cli("eval", *common, "--data", str(tmp_path / "missing"))
    assert "does not exist" in error_line(res, 2)
    (tmp_path / "bad.json").write_text(json.dumps({**arch.to_dict(), "d": [2, 2, 5, 2, 2]}))
    bad = [*common[:-1], str(tmp_path / "bad.json")]
    res = _cli("eval", *bad, "--data", str(data))
    assert "d[2]=5 is not in [2, 3, 4]" in error_line(res, 2)


def test_accuracy_build_cli_needs_a_full_training_split(tmp_path: Path) -> None:
    data = tmp_path / "ds"
    for cls in ("a", "b"):
        (data / "train" / cls).mkdir(parents=True)
        from PIL import Image

        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(data / "train" / cls / "0.png")
    res = _cli("accuracy", "build", "--supernet", SUPERNET, "--data", str(data), "--out", str(tmp_path / "t"))
    assert "the training split has 2 images" in error_line(res, 2)


def test_release_weights_round_trip(tmp_path: Path) -> None:
    data = _images(600)  # smoke holds out a tenth, trains on 512 of the rest
    config = fit_config(load_recipe("smoke"), data)
    trainer = Trainer(config, data, tmp_path / "run", log=lambda _: None)
    trainer.run(stop_after_seconds=0)  # one training step, checkpointed: a run that has not finished
    with pytest.raises(CheckpointError, match="has not finished training"):
        release_weights(tmp_path / "run", tmp_path / "w.fp16.pt")
    release = release_weights(tmp_path / "run", tmp_path / "w.fp16.pt", allow_unfinished=True)
    with pytest.raises(CheckpointError, match="normalized images with .*0.4914.* but supernet .*0.485"):
        mit = "ofa_mbv3_d234_e346_k357_w1.0"
        release_weights(tmp_path / "run", tmp_path / "mit.pt", supernet=mit, allow_unfinished=True)
    assert not (tmp_path / "mit.pt").exists(), "a run trained on CIFAR-10 is no release of MIT's net"
    import hashlib

    assert release.sha256 == hashlib.sha256(release.path.read_bytes()).hexdigest()
    assert release.size_bytes == release.path.stat().st_size
    saved = torch.load(release.path, weights_only=True)
    assert {t.dtype for t in saved.values() if t.is_floating_point()} == {torch.float16}

    fp32 = get_supernet_info(SUPERNET).build()
    fp32.load_state_dict(load_weights(tmp_path / "run"))
    fp16 = load_supernet(SUPERNET, checkpoint=release.path)
    assert next(fp16.parameters()).dtype == torch.float32
    for p32, p16 in zip(fp32.state_dict().values(), fp16.state_dict().values()):
        assert torch.equal(p32.half().to(p32.dtype), p16)
    fp32.eval()
    x = torch.randn(8, 3, 32, 32)
    for arch in (fp32.space.max_arch(32), fp32.space.min_arch(24)):
        fp32.set_arch(arch)
        fp16.set_arch(arch)
        a, b = fp32(x), fp16(x)
        assert (a - b).abs().max() <= 1e-2 * a.abs().max()
    # The CLI: refuses the unfinished run in one line, writes what the API writes when allowed.
    res = _cli("release", str(tmp_path / "run"), "--out", str(tmp_path / "cli.pt"))
    assert "has not finished training" in error_line(res, 7) and not (tmp_path / "cli.pt").exists()
    res = _cli(
        "--json", "release", str(tmp_path / "run"), "--out", str(tmp_path / "cli.pt"), "--allow-unfinished"
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["sha256"] == hashlib.sha256((tmp_path / "cli.pt").read_bytes()).hexdigest()
    by_cli = torch.load(tmp_path / "cli.pt", weights_only=True)
    assert by_cli.keys() == saved.keys() and all(torch.equal(by_cli[k], saved[k]) for k in saved)
    with pytest.raises(CheckpointError, match="no training checkpoint"):
        release_weights(tmp_path / "nowhere", tmp_path / "x.pt")
    buf = io.BytesIO()
    torch.save({"just": "a dict"}, buf)
    (tmp_path / "junk.pt").write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="not an ofa-edge training checkpoint"):
        release_weights(tmp_path / "junk.pt", tmp_path / "x.pt")
