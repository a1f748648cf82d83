"""Progressive shrinking on tiny data: an interrupted run resumes exactly; data loading."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from ofa_edge.data import ImageArray, load_split
from ofa_edge.errors import ConfigError, OfaEdgeError
from ofa_edge.supernet.preprocessing import CIFAR10, IMAGENET
from ofa_edge.supernet.registry import CIFAR10_SUPERNET, CIFAR10_V2_SUPERNET
from ofa_edge.training import Phase, TrainConfig, Trainer, load_recipe, progressive, recipe_names
from ofa_edge.training.curve import CURVE_FILE


def _toy_data(n: int) -> ImageArray:
    """Two classes a network can tell apart: bright vs dark images, with noise."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n)
    base = np.where(labels[:, None, None, None] == 1, 170, 85)
    images = np.clip(base + rng.normal(0, 30, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
    return ImageArray(images, labels.astype(np.int64), ("dark", "bright"))


CONFIG = TrainConfig(
    width_mult=0.35,
    n_classes=2,
    resolutions=(24, 32),
    batch_size=64,
    val_images=64,
    phases=(
        Phase("teacher", 1, 0.05, (7,), (6,), (4,), distill=False, warmup_epochs=0.5),
        Phase("kernel", 1, 0.02, (3, 5, 7), (6,), (4,)),
        Phase("expand-1", 1, 0.02, (3, 5, 7), (4, 6), (2, 3, 4), 2, sort_channels_stage=0),
    ),
)


def test_interrupted_run_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _toy_data(192)  # 128 trained on, 64 held out: 2 steps per epoch
    draws: list[int] = []
    real_plot = progressive.plot_curve

    def counted(log: list[dict], path: Path) -> None:
        draws.append(len(log))
        real_plot(log, path)

    monkeypatch.setattr(progressive, "plot_curve", counted)
    straight = Trainer(CONFIG, data, tmp_path / "a", log=lambda _: None)
    assert straight.run()
    assert draws == [1, 2, 3], "the curve is drawn once after each epoch, not again at the end"
    resumes = 0
    while not Trainer(CONFIG, data, tmp_path / "b", log=lambda _: None).run(stop_after_seconds=0):
        resumes += 1  # every call trains one step, saves and stops: a kill after each step
    assert resumes == 6  # one stop after each of the 3 phases x 2 steps
    final = Trainer(CONFIG, data, tmp_path / "b", log=lambda _: None)
    assert final.done
    a, b = straight.net.state_dict(), final.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [e["loss"] for e in straight.state.log] == [e["loss"] for e in final.state.log]
    curve = tmp_path / "a" / CURVE_FILE  # the curve, drawn after every epoch
    assert curve.read_bytes().startswith(b"\x89PNG") and (tmp_path / "b" / CURVE_FILE).is_file()
    curve.unlink()
    assert Trainer(CONFIG, data, tmp_path / "a", log=lambda _: None).run() and curve.is_file(), "redrawn"


def test_other_config_refuses_to_resume(tmp_path: Path) -> None:
    data = _toy_data(128)
    Trainer(CONFIG, data, tmp_path, log=lambda _: None).run(stop_after_seconds=0)
    other = TrainConfig(**{**CONFIG.__dict__, "seed": 1})
    with pytest.raises(ConfigError, match="written by another training config"):
        Trainer(other, data, tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(Exception, match="cannot resume from .*checkpoint.pt"):
        Trainer(CONFIG, data, tmp_path)


def test_phases_not_yet_begun_may_change_on_resume(tmp_path: Path) -> None:
    """A long run's later phases can be re-planned between resumes; what was trained cannot."""
    data = _toy_data(192)  # 2 steps per epoch
    for _ in range(3):  # the teacher's 2 steps, then the kernel phase's first
        Trainer(CONFIG, data, tmp_path, log=lambda _: None).run(stop_after_seconds=0)
    teacher, kernel, expand = CONFIG.phases
    begun = dataclasses.replace(CONFIG, phases=(teacher, dataclasses.replace(kernel, lr=0.01), expand))
    with pytest.raises(ConfigError, match="written by another training config"):
        Trainer(begun, data, tmp_path)
    ahead = dataclasses.replace(CONFIG, phases=(teacher, kernel, dataclasses.replace(expand, epochs=2)))
    logs: list[str] = []
    trainer = Trainer(ahead, data, tmp_path, log=logs.append)
    before = [dataclasses.asdict(p) for p in CONFIG.phases]
    assert trainer.state.recipe_changes == [{"phase": 1, "epoch": 0, "step": 1, "phases_before": before}]
    assert any("phases changed from phase 2 on" in line for line in logs)
    assert trainer.run()
    assert [(e["phase"], e["epoch"]) for e in trainer.state.log] == [
        ("teacher", 1),
        ("kernel", 1),
        ("expand-1", 1),
        ("expand-1", 2),
    ]
    with pytest.raises(ConfigError, match="written by another training config"):
        Trainer(CONFIG, data, tmp_path)  # the edited phase has run: the old recipe no longer fits


def test_image_folder_and_errors(tmp_path: Path) -> None:
    from PIL import Image

    for cls, value in (("cat", 40), ("dog", 200)):
        folder = tmp_path / "ds" / "test" / cls
        folder.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((40, 40, 3), value, np.uint8)).save(folder / f"{i}.png")
    arr = load_split(tmp_path / "ds", "test", size=32)
    assert arr.images.shape == (6, 32, 32, 3) and arr.classes == ("cat", "dog")
    assert list(arr.labels) == [0, 0, 0, 1, 1, 1]
    again = load_split(tmp_path / "ds", "test", size=32)  # from the cache
    assert np.array_equal(again.images, arr.images)
    with pytest.raises(ConfigError, match="has no train/ folder"):
        load_split(tmp_path / "ds", "train")
    with pytest.raises(ConfigError, match="does not exist"):
        load_split(tmp_path / "nope", "test")


def test_config_carries_its_layout() -> None:
    cifar = TrainConfig(**{**CONFIG.__dict__, "stem_stride": 1, "stage_strides": (1, 2, 2, 1, 2)})
    assert TrainConfig.from_dict(cifar.to_dict()) == cifar != CONFIG
    assert cifar.build().spec.stage_strides == (1, 2, 2, 1, 2) and cifar.build().spec.stem_stride == 1
    # Runs started before layouts existed stored no strides: they read back as MIT's layout.
    old = {k: v for k, v in CONFIG.to_dict().items() if k not in ("stem_stride", "stage_strides")}
    assert TrainConfig.from_dict(old) == CONFIG and CONFIG.build().spec.is_mit_layout


def test_config_carries_its_preprocessing() -> None:
    """Training normalizes with the config's statistics: CIFAR-10's in every recipe, as in runs
    started before the field existed (their stored configs read back equal), and as the registry
    entries each recipe trains say."""
    imagenet = TrainConfig(**{**CONFIG.__dict__, "preprocessing": IMAGENET})
    assert TrainConfig.from_dict(imagenet.to_dict()) == imagenet != CONFIG
    old = {k: v for k, v in CONFIG.to_dict().items() if k != "preprocessing"}
    assert TrainConfig.from_dict(old) == CONFIG and CONFIG.preprocessing == CIFAR10
    for name in recipe_names():
        assert load_recipe(name).preprocessing == CIFAR10, name
    assert CIFAR10_SUPERNET.preprocessing == CIFAR10_V2_SUPERNET.preprocessing == CIFAR10


def test_cpu_seconds_are_logged_across_resumes(tmp_path: Path) -> None:
    config = TrainConfig(**{**CONFIG.__dict__, "resolutions": (24,), "phases": CONFIG.phases[:1]})
    data = _toy_data(192)  # 2 steps
    first = Trainer(config, data, tmp_path, log=lambda _: None)
    assert not first.run(stop_after_seconds=0)
    assert first.state.train_cpu_seconds > 0 and first.state.epoch_cpu_seconds > 0
    final = Trainer(config, data, tmp_path, log=lambda _: None)
    assert final.run()
    (entry,) = final.state.log
    assert entry["train_cpu_seconds"] == round(final.state.train_cpu_seconds, 1)
    assert final.state.train_cpu_seconds > first.state.train_cpu_seconds
    assert entry["epoch_cpu_seconds"] > 0 and final.state.epoch_cpu_seconds == 0  # reset for the next epoch


def test_recipe_files_and_their_errors(tmp_path: Path) -> None:
    """Shipped recipes load by name, one's own by path; bad files fail in one line naming the key."""
    assert {"cifar10-default", "cifar10-v2", "smoke"} <= set(recipe_names())
    v2 = load_recipe("cifar10-v2")
    assert v2.stem_stride == 1 and [p.epochs for p in v2.phases] == [60, 5, 2, 5, 2, 7]
    own = tmp_path / "mine.toml"
    text = (Path(__file__).parents[1] / "ofa_edge/training/recipes/smoke.toml").read_text()
    own.write_text(text.replace("batch_size = 64", "batch_size = 32\nmicro_batch = 16"))
    mine = load_recipe(own)
    assert (mine.batch_size, mine.micro_batch) == (32, 16) and mine.phases == load_recipe("smoke").phases
    for bad, message in (
        (text.replace("batch_size", "batch_sise"), "unknown key.*batch_sise"),
        (text.replace('name = "kernel"', 'name = "kernel"\nlrr = 1'), "phase 2 has unknown key.*lrr"),
        (text.replace("format_version = 1", "format_version = 2"), "is not format_version = 1"),
        (text + "n_classes = 3\n", "unknown key.*n_classes"),  # the data's class folders say
        (text.replace('preprocessing = "cifar10"', 'preprocessing = "svhn"'), "unknown preprocessing"),
        ("format_version = 1\n", "has no \\[\\[phases\\]\\]"),
        ("format_version = = 1", "cannot read recipe"),
    ):
        own.write_text(bad)
        with pytest.raises(OfaEdgeError, match=message):
            load_recipe(own)
    with pytest.raises(OfaEdgeError, match="unknown recipe"):
        load_recipe("cifar100")


def test_counts_adapt_to_a_small_dataset_or_fail_up_front() -> None:
    """A recipe's image counts fit a small dataset (a tenth held out) or fail before training,
    naming the numbers; a 3-class set of 180 images trains with the smoke recipe."""
    from ofa_edge.training import fit_config
    from ofa_edge.training.progressive import check_counts

    smoke = load_recipe("smoke")
    data = ImageArray(np.zeros((180, 32, 32, 3), np.uint8), np.arange(180) % 3, ("a", "b", "c"))
    fitted = fit_config(smoke, data)
    assert fitted.n_classes == 3 and check_counts(fitted, 180, 1) == (64, 64)
    assert check_counts(fitted, 180, 2) == (32, 32)
    with pytest.raises(ConfigError, match="162 images to train on are fewer than one batch of 256"):
        check_counts(TrainConfig(**{**fitted.__dict__, "batch_size": 256}), 180, 1)
    with pytest.raises(ConfigError, match="batch of 64 does not split into 3 processes"):
        check_counts(fitted, 180, 3)
    with pytest.raises(ConfigError, match="holding out 200 of 180 images"):
        check_counts(TrainConfig(**{**fitted.__dict__, "val_images": 200}), 180, 1)
    with pytest.raises(ConfigError, match="the config has 10 classes, the data 3"):
        Trainer(smoke, data, Path("/nonexistent"))
