"""Supernet entry files: a supernet of one's own, described by a TOML file that every
``--supernet`` takes, and that ``release`` writes beside a run's weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ofa_edge.data import ImageArray
from ofa_edge.errors import CheckpointError, ConfigError, RegistryError
from ofa_edge.files import sha256_file
from ofa_edge.supernet.counting import count
from ofa_edge.supernet.preprocessing import Preprocessing
from ofa_edge.supernet.registry import describe_supernet, get_supernet_info, load_supernet, write_entry
from ofa_edge.supernet.space import SearchSpace
from ofa_edge.supernet.spec import MIT_STAGE_STRIDES, MBv3Spec
from ofa_edge.training import Phase, TrainConfig, Trainer
from ofa_edge.training.release import load_weights, release_weights
from tests.test_cli import error_line, run

#: Neither CIFAR-10's nor ImageNet's statistics: the entry must carry the run's own.
OWN = Preprocessing(mean=(0.5, 0.25, 0.125), std=(0.2, 0.3, 0.4))
#: The layout of the run: 3 classes, stem stride 1 (not MIT's), two resolutions.
SPEC = MBv3Spec(0.5, 3, SearchSpace(resolutions=(24, 28)), stem_stride=1, stage_strides=MIT_STAGE_STRIDES)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class run of one training step (unfinished, checkpointed) in a folder ``flowers-run``."""
    config = TrainConfig(
        width_mult=SPEC.width_mult,
        n_classes=SPEC.n_classes,
        resolutions=SPEC.space.resolutions,
        stem_stride=SPEC.stem_stride,
        batch_size=8,
        train_images=8,
        val_images=8,
        preprocessing=OWN,
        phases=(Phase("teacher", 1, 0.1, (7,), (6,), (4,), distill=False),),
    )
    rng = np.random.default_rng(0)
    data = ImageArray(rng.integers(0, 256, (16, 24, 24, 3), np.uint8), np.arange(16) % 3, ("a", "b", "c"))
    folder = tmp_path_factory.mktemp("runs") / "flowers-run"
    Trainer(config, data, folder, log=lambda _: None).run(stop_after_seconds=0)
    return folder


@pytest.fixture(scope="module")
def released(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run released without a registry supernet: its entry file (weights beside it)."""
    made = release_weights(
        run_dir, tmp_path_factory.mktemp("release") / "flowers.fp16.pt", allow_unfinished=True
    )
    assert made.entry == made.path.with_name("flowers.fp16.toml") and made.supernet == "flowers-run"
    assert made.sha256 == sha256_file(made.path)
    return made.entry


def _copy(entry: Path, folder: Path) -> Path:
    """The entry and its weights copied into ``folder`` (the weights path is relative)."""
    folder.mkdir()
    shutil.copy(entry.with_suffix(".pt"), folder)
    return Path(shutil.copy(entry, folder))


def test_release_writes_an_entry_every_loader_reads(run_dir: Path, released: Path, tmp_path: Path) -> None:
    text = released.read_text()
    assert text.startswith('format_version = 1\nname = "flowers-run"\n')
    assert 'file = "flowers.fp16.pt"' in text  # relative: entry and weights move together
    info = get_supernet_info(released)
    assert (info.name, info.spec, info.preprocessing) == ("flowers-run", SPEC, OWN)
    assert info.local is not None and info.local.path == released.with_name("flowers.fp16.pt")
    assert get_supernet_info("flowers-run") == info  # the name resolves once the file was read
    assert describe_supernet(str(released)) == {"id": "flowers-run", **SPEC.to_dict()}

    moved = _copy(released, tmp_path / "moved")
    net = load_supernet(str(moved))
    assert net.spec == SPEC
    trained = load_weights(run_dir)
    assert net.state_dict().keys() == trained.keys()
    for key, value in net.state_dict().items():
        expected = (
            trained[key].half().to(trained[key].dtype) if trained[key].is_floating_point() else trained[key]
        )
        assert value.dtype == trained[key].dtype and torch.equal(value, expected), key
    assert not torch.equal(
        trained["first_conv.conv.weight"], torch.zeros_like(trained["first_conv.conv.weight"])
    )


def test_tampered_weights_are_refused_in_one_line(released: Path, tmp_path: Path) -> None:
    entry = _copy(released, tmp_path / "copy")
    weights = entry.with_suffix(".pt")
    state = torch.load(weights, weights_only=True)
    state["classifier.linear.bias"] += 1
    torch.save(state, weights)
    with pytest.raises(CheckpointError) as caught:
        load_supernet(str(entry))
    message = str(caught.value)
    assert "\n" not in message
    assert f"weights file {weights} has sha256 {sha256_file(weights)[:12]}..." in message
    assert f"but its supernet entry {entry} records" in message
    assert f'set sha256 = "{sha256_file(weights)}" in {entry}' in message
    weights.unlink()
    with pytest.raises(CheckpointError, match=f"no file {weights} \\(named in {entry}\\)"):
        load_supernet(str(entry))


@pytest.mark.parametrize(
    ("old", "new", "error", "message"),
    [
        ("format_version = 1", "format_version = 2", ConfigError, "has format_version = 2, not 1"),
        ("format_version = 1\n", "", ConfigError, "has format_version = None, not 1"),
        ("n_classes = 3\n", "", ConfigError, "lacks spec.n_classes"),
        ("[preprocessing]", "[preprocessing]\nscale = 1", ConfigError, "has unknown key preprocessing.scale"),
        ("width_mult = 0.5", 'width_mult = "wide"', ConfigError, "spec.width_mult = 'wide' is not a number"),
        ("depth_list = [2, 3, 4]", "depth_list = [0, 3]", ConfigError, "depth_list: depths must be >= 1"),
        ("std = [0.2, 0.3, 0.4]", "std = [0.2, 0.3]", ConfigError, "mean and std need 3 values"),
        ('sha256 = "', 'sha256 = "x', ConfigError, "weights.sha256 = 'x"),
        ('name = "flowers-run"', 'name = "my flowers"', ConfigError, "'my flowers' cannot name a supernet"),
        ('name = "flowers-run"', 'name = "ofa-mbv3-cifar10"', RegistryError, "is the registry's"),
        ("[spec]", "[spec", ConfigError, "is unreadable: Expected ']'"),
    ],
)
def test_malformed_entries_say_what_and_where(
    released: Path, tmp_path: Path, old: str, new: str, error: type[Exception], message: str
) -> None:
    entry = tmp_path / "bad.toml"
    text = released.read_text()
    assert old in text
    entry.write_text(text.replace(old, new, 1))
    with pytest.raises(error) as caught:
        get_supernet_info(entry)
    assert "\n" not in str(caught.value) and str(caught.value).startswith(f"supernet entry {entry}")
    assert message in str(caught.value) and caught.value.hint  # type: ignore[attr-defined]


def test_a_missing_entry_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"no supernet entry file {tmp_path / 'nope.toml'}"):
        get_supernet_info(tmp_path / "nope.toml")


def test_the_writer_round_trips_any_description(released: Path, tmp_path: Path) -> None:
    weights = _copy(released, tmp_path / "w").with_suffix(".pt")
    odd = 'say "hi" \\ done\n\ttab, ünïcode, \x7f and \x01 😀'
    info = write_entry(
        tmp_path / "sub" / "odd.toml",
        name="odd_1.0",
        description=odd,
        spec=SPEC,
        preprocessing=OWN,
        weights=weights,
    )
    assert info.description == odd and info.spec == SPEC and info.preprocessing == OWN
    assert 'file = "../w/flowers.fp16.pt"' in (tmp_path / "sub" / "odd.toml").read_text()
    assert load_supernet(str(tmp_path / "sub" / "odd.toml")).spec == SPEC


def test_release_options_that_do_not_fit_are_refused(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="writes no entry file to name"):
        release_weights(
            run_dir, tmp_path / "w.pt", supernet="ofa-mbv3-cifar10", name="x", allow_unfinished=True
        )
    with pytest.raises(ConfigError, match="cannot write supernet entry .*w.toml for weights .*w.toml"):
        release_weights(run_dir, tmp_path / "w.toml", allow_unfinished=True)
    with pytest.raises(ConfigError, match="an entry file's name ends in .toml"):
        release_weights(run_dir, tmp_path / "w.pt", entry=tmp_path / "w.txt", allow_unfinished=True)
    with pytest.raises(ConfigError, match="'my run' cannot name a supernet"):
        release_weights(run_dir, tmp_path / "w.pt", name="my run", allow_unfinished=True)
    with pytest.raises(CheckpointError, match="normalized images with .*0.125"):
        release_weights(run_dir, tmp_path / "w.pt", supernet="ofa-mbv3-cifar10", allow_unfinished=True)
    assert not list(tmp_path.iterdir()), "a refused release writes nothing"


def test_cli_release_then_commands_take_the_entry(run_dir: Path, tmp_path: Path) -> None:
    res = run(
        "--json", "release", str(run_dir), "--out", str(tmp_path / "w.pt"), "--allow-unfinished",
        "--name", "flowers-v1", "--entry", str(tmp_path / "entries" / "flowers.toml"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    entry = tmp_path / "entries" / "flowers.toml"
    assert (doc["supernet"], doc["entry"], doc["sha256"]) == (
        "flowers-v1",
        str(entry),
        sha256_file(tmp_path / "w.pt"),
    )
    assert 'file = "../w.pt"' in entry.read_text()

    res = run("--json", "count", "--supernet", str(entry), "--max")
    assert res.returncode == 0, res.stderr
    counted = json.loads(res.stdout)
    expected = count(SPEC, SPEC.space.max_arch())
    assert counted["supernet"] == "flowers-v1"  # the id, not the path, is what commands record
    assert (counted["macs"], counted["params"]) == (expected.macs, expected.params)

    (tmp_path / "arch.json").write_text(json.dumps(SPEC.space.min_arch().to_dict()))
    (tmp_path / "w.pt").write_bytes((tmp_path / "w.pt").read_bytes() + b"\0")
    res = run("export", str(tmp_path / "arch.json"), "--supernet", str(entry), "--format", "onnx",
              "--out", str(tmp_path / "m.onnx"))  # fmt: skip
    line = error_line(res, 7)
    assert (
        line.startswith(f"ofa-edge: error: weights file {tmp_path / 'w.pt'} has sha256") and "records" in line
    )
    assert not (tmp_path / "m.onnx").exists()
