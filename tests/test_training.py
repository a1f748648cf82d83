"""Progressive shrinking on tiny data: an interrupted run resumes exactly; data loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ofa_edge.data import ImageArray, load_split
from ofa_edge.errors import ConfigError
from ofa_edge.supernet.preprocessing import CIFAR10, IMAGENET
from ofa_edge.supernet.registry import CIFAR10_SUPERNET, CIFAR10_V2_SUPERNET
from ofa_edge.training.progressive import RECIPES, Phase, TrainConfig, Trainer


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


def test_interrupted_run_resumes_exactly(tmp_path: Path) -> None:
    data = _toy_data(192)  # 128 trained on, 64 held out: 2 steps per epoch
    straight = Trainer(CONFIG, data, tmp_path / "a", log=lambda _: None)
    assert straight.run()
    resumes = 0
    while not Trainer(CONFIG, data, tmp_path / "b", log=lambda _: None).run(stop_after_seconds=0):
        resumes += 1  # every call trains one step, saves and stops: a kill after each step
    assert resumes == 6  # one stop after each of the 3 phases x 2 steps
    final = Trainer(CONFIG, data, tmp_path / "b", log=lambda _: None)
    assert final.done
    a, b = straight.net.state_dict(), final.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [e["loss"] for e in straight.state.log] == [e["loss"] for e in final.state.log]


def test_other_config_refuses_to_resume(tmp_path: Path) -> None:
    data = _toy_data(128)
    Trainer(CONFIG, data, tmp_path, log=lambda _: None).run(stop_after_seconds=0)
    other = TrainConfig(**{**CONFIG.__dict__, "seed": 1})
    with pytest.raises(ConfigError, match="written by another training config"):
        Trainer(other, data, tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(Exception, match="cannot resume from .*checkpoint.pt"):
        Trainer(CONFIG, data, tmp_path)


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
    for name, recipe in RECIPES.items():
        assert recipe().preprocessing == CIFAR10, name
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
