"""The fixed calibration images: BN recalibration and int8 calibration on any machine, offline.

``cifar10_calib.npz`` (shipped under ``ofa_edge/weights/``) holds ``CALIB_IMAGES`` uint8 CIFAR-10
training images and their labels, drawn deterministically from the images ``ofa-edge train``
trains on (never from the 5,000 validation images it holds out), so accuracy tables measured with
the dataset and BN statistics computed from the shipped file are the same.
"""

from __future__ import annotations

import contextlib
from importlib import resources
from pathlib import Path

import numpy as np

from ofa_edge.accuracy.measure import CALIB_IMAGES
from ofa_edge.data import ImageArray, load_split, split_train_val
from ofa_edge.errors import ConfigError
from ofa_edge.files import atomic_path

CALIB_FILE = "cifar10_calib.npz"


def packaged_calibration_path() -> Path:
    """Where the shipped calibration set lives inside the installed package."""
    return Path(str(resources.files("ofa_edge") / "weights" / CALIB_FILE))


def calibration_and_validation(
    train: ImageArray, calib_count: int = CALIB_IMAGES
) -> tuple[ImageArray, ImageArray]:
    """(calibration set, held-out validation set) of a training split, as ``ofa-edge train`` splits it.

    The calibration set is a fixed random ``calib_count`` of the trained-on images (seed 0; all
    of them in a smaller split); the validation set is the images training holds out.
    """
    trained_on, val = split_train_val(train)
    if not val:
        raise ConfigError(
            f"the training split has {len(train)} images, too few to hold a tenth out for validation",
            hint="use a training split of at least 10 images",
        )
    return trained_on.subset(calib_count, seed=0), val


def eval_calibration(data: str | Path, test: ImageArray) -> tuple[ImageArray, str]:
    """BN calibration images for evaluating on dataset ``data`` (whose test split is ``test``),
    and the split they come from: a fixed ``CALIB_IMAGES`` of ``DATA/train`` when it exists, else
    of the test split itself (a dataset without training images can still be evaluated); either
    way the split whose class folders number the labels."""
    path = Path(data)
    train = None
    if not path.is_dir() or (path / "train").is_dir():
        with contextlib.suppress(ConfigError):  # an archive without train/ (test/ was just read)
            train = load_split(path, "train")
    if train is None:
        return test.subset(CALIB_IMAGES), "test"
    return train.subset(CALIB_IMAGES), "train"


def write_calibration_set(source: str | Path, out_path: str | Path, calib_count: int = CALIB_IMAGES) -> Path:
    """Write the calibration set of dataset ``source`` (folder or .tar.gz) to ``out_path`` (.npz)."""
    calib, _ = calibration_and_validation(load_split(source, "train"), calib_count)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path) as tmp, tmp.open("wb") as f:
        np.savez_compressed(f, images=calib.images, labels=calib.labels, classes=np.array(calib.classes))
    return out_path


def load_calibration_set(path: str | Path | None = None) -> ImageArray:
    """The calibration images of ``path``, by default the set shipped with the package."""
    path = Path(path) if path is not None else packaged_calibration_path()
    try:
        with np.load(path) as z:
            return ImageArray(z["images"], z["labels"], tuple(str(c) for c in z["classes"]))
    except (OSError, KeyError, ValueError) as err:
        raise ConfigError(
            f"cannot read calibration set {path}: {err}",
            hint="recreate it with ofa_edge.accuracy.calibration.write_calibration_set",
        ) from None
