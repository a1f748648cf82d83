"""Calibration and validation images for export: loading them, and preparing them for a subnet.

Images travel as uint8 N x H x W x 3 arrays (as ``ofa_edge.data`` decodes them) and are
normalized (with the supernet's statistics) and resized exactly as in training when a subnet
needs them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ofa_edge.accuracy.calibration import packaged_calibration_path
from ofa_edge.data import _decode, load_split, resize, to_tensor
from ofa_edge.errors import ConfigError
from ofa_edge.supernet.preprocessing import Preprocessing

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def prepare_images(images: np.ndarray, resolution: int, preprocessing: Preprocessing) -> np.ndarray:
    """uint8 N x H x W x 3 images -> float32 N x 3 x R x R, normalized with ``preprocessing`` and
    resized as in training."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ConfigError(
            f"images must be a uint8 N x H x W x 3 array, got {images.dtype} {tuple(images.shape)}",
            hint="decode images as RGB uint8 arrays",
        )
    return resize(to_tensor(images, preprocessing), resolution).numpy()


def load_images(path: str | Path, n: int, split: str, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Up to ``n`` uint8 images (and labels if known) from an .npz, an ImageFolder or a plain folder.

    An ``.npz`` holds ``images`` (N x H x W x 3 uint8) and optionally ``labels``; an ImageFolder
    (folder or .tar/.tar.gz with ``<split>/<class>/``) gives a fixed random subset with labels; a
    folder of image files gives the first ``n`` (sorted), decoded at ``size`` x ``size``, no labels.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist", hint="pass an .npz, an ImageFolder or a folder of images")
    if path.suffix == ".npz":
        with np.load(path) as z:
            if "images" not in z:
                raise ConfigError(f"{path} has no 'images' array", hint="save uint8 N x H x W x 3 as images=")
            return z["images"][:n], z["labels"][:n] if "labels" in z else None
    if path.is_file() or (path / split).is_dir():
        data = load_split(path, split).subset(n)
        return data.images, data.labels
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
    if not files:
        raise ConfigError(f"no images in {path}", hint=f"expected {', '.join(IMAGE_SUFFIXES)} files")
    return np.stack([_decode(f.read_bytes(), size) for f in files]), None


def default_calibration() -> Path:
    """The calibration set shipped in the package (``--calib-default``)."""
    path = packaged_calibration_path()
    if not path.is_file():
        raise ConfigError(
            f"this ofa-edge has no shipped calibration images ({path})",
            hint="pass --calib DATA (an .npz, an ImageFolder or a folder of images)",
        )
    return path
