"""A user's own data, end to end through the CLI as the README's "Train your own supernet" says:
a 3-class ImageFolder of small PNGs -> train (smoke recipe) -> release with an entry file ->
eval -> accuracy build + fit -> search -> export, every later command given the entry file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort

from ofa_edge.testing.images import write_image_folder

OFA_EDGE = str(Path(sys.executable).with_name("ofa-edge"))


def _run(*args: str) -> dict:
    res = subprocess.run(
        [OFA_EDGE, "--json", *args], capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL
    )
    assert res.returncode == 0, f"{args[0]}: {res.stderr[-2000:]}"
    return json.loads(res.stdout)


def test_three_class_image_folder_end_to_end(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "flowers", classes=3, per_class=60)  # the 180 images
    write_image_folder(tmp_path / "flowers", classes=3, per_class=10, split="test")
    run = tmp_path / "run"
    trained = _run(
        "train", "--data", str(data), "--out", str(run), "--recipe", "smoke", "--host-threads", "1"
    )
    assert trained["finished"] and len(trained["log"]) == 6  # one epoch of each of the 6 phases
    released = _run("release", str(run), "--out", str(tmp_path / "flowers.fp16.pt"), "--name", "flowers")
    entry = released["entry"]
    assert Path(entry).is_file()

    top1 = _run("eval", "--supernet", entry, "--max", "--data", str(data), "--host-threads", "1")
    assert 0 <= top1["top1"] <= 100
    table = tmp_path / "acc.jsonl"
    _run(
        "accuracy", "build", "--supernet", entry, "--data", str(data), "--out", str(table), "--samples", "12"
    )
    assert len(table.read_text().splitlines()) == 13  # header + 12 subnets
    _run(
        "accuracy",
        "fit",
        str(table),
        "--supernet",
        entry,
        "--out",
        str(tmp_path / "pred.pt"),
        "--epochs",
        "20",
    )
    arch = tmp_path / "arch.json"
    found = _run(
        "search", "--supernet", entry, "--predictor", str(tmp_path / "pred.pt"), "--macs", "50",
        "--generations", "20", "--out", str(arch),
    )  # fmt: skip
    assert found["results"][0]["macs"] <= 50e6 and arch.is_file()
    onnx = tmp_path / "flowers.onnx"
    _run("export", str(arch), "--supernet", entry, "--format", "onnx", "--out", str(onnx))
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].shape[-1] == 3  # the data's 3 classes
