"""Image data for training, BN recalibration and evaluation.

Reads an ImageFolder layout (``<root>/<split>/<class>/*.jpg``) from a directory or straight from a
``.tar``/``.tar.gz`` archive of one (such as CIFAR-10's ``cifar10-jpg.tar.gz``), decodes it once
into uint8 arrays and caches them (``.npz`` in the ofa-edge cache), so later epochs and runs
cost no JPEG decoding. Batches are float tensors normalized with the supernet's statistics (its
registry entry's ``Preprocessing``), optionally augmented (random crop with 4-px padding,
horizontal flip) and resized to the subnet's resolution.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ofa_edge.errors import ConfigError
from ofa_edge.files import atomic_path, cache_dir
from ofa_edge.supernet.preprocessing import Preprocessing

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
#: Images of a training split held out for validation (at most; a tenth of a smaller split):
#: never trained on, never calibrated on.
VAL_IMAGES = 5000


def held_out_count(n: int) -> int:
    """How many of a training split's ``n`` images are held out for validation: ``VAL_IMAGES``,
    or a tenth of a split smaller than ten times that (CIFAR-10's 50,000 hold out 5,000)."""
    return min(VAL_IMAGES, n // 10)


@dataclass(frozen=True)
class ImageArray:
    """A decoded split: ``images`` N x H x W x 3 uint8, ``labels`` N int64, class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int, seed: int = 0) -> ImageArray:
        """A fixed random subset of ``n`` images (all if ``n`` >= len)."""
        if n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return ImageArray(self.images[idx], self.labels[idx], self.classes)


def _decode(data: bytes, size: int | None) -> np.ndarray:
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _members(source: Path, split: str) -> Iterator[tuple[str, str, bytes]]:
    """(class, file name, bytes) of every image under ``split/`` in a folder or tar archive."""
    if source.is_dir():
        root = source / split
        if not root.is_dir():
            raise ConfigError(
                f"{source} has no {split}/ folder", hint=f"expected {source}/{split}/<class>/*.jpg"
            )
        for path in sorted(root.glob("*/*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                yield path.parent.name, path.name, path.read_bytes()
        return
    try:
        with tarfile.open(source) as tar:
            for member in tar:
                parts = Path(member.name).parts
                if (
                    member.isfile()
                    and len(parts) == 3
                    and parts[0] == split
                    and Path(parts[2]).suffix.lower() in IMAGE_SUFFIXES
                ):
                    f = tar.extractfile(member)
                    assert f is not None
                    yield parts[1], parts[2], f.read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ConfigError(
            f"cannot read images from {source}: {err}",
            hint="pass an ImageFolder directory or a .tar/.tar.gz of one",
        ) from None


def _common_size(
    items: list[tuple[str, str, bytes]], source: Path, split: str, fallback: int | None
) -> int | None:
    """None when every image has one size (decode as they are), else ``fallback``."""
    from PIL import Image

    sizes = {Image.open(io.BytesIO(data)).size for _, _, data in items}  # headers only
    if len(sizes) == 1:
        return None
    if fallback is None:
        raise ConfigError(
            f"the images in {source}/{split} have {len(sizes)} different sizes",
            hint="resize them to one size, or set image_size in the training recipe",
        )
    return fallback


def load_split(
    source: str | Path, split: str, size: int | None = None, *, size_if_mixed: int | None = None
) -> ImageArray:
    """All images of ``split`` (e.g. "train", "test") from ``source``, cached after first decode,
    at ``size`` x ``size``; with no ``size``, at their own size when they share one, else at
    ``size_if_mixed`` (a network's largest resolution, say)."""
    source = Path(source).resolve()
    if not source.exists():
        raise ConfigError(f"dataset {source} does not exist", hint="check the --data path")
    key = hashlib.sha256(f"{source}|{split}|{size}|{size_if_mixed}".encode())
    files = sorted((source / split).rglob("*")) if source.is_dir() else [source]
    for path in files:  # a folder's cache follows its files: one added, removed or changed
        stat = path.stat()
        key.update(f"|{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    cached = cache_dir() / "datasets" / f"{source.name}-{split}-{key.hexdigest()[:16]}.npz"
    if cached.is_file():
        with np.load(cached) as z:
            return ImageArray(z["images"], z["labels"], tuple(str(c) for c in z["classes"]))
    items = sorted(_members(source, split))
    if not items:
        raise ConfigError(
            f"no images under {split}/<class>/ in {source}",
            hint="expected an ImageFolder layout: <split>/<class>/<image>.jpg",
        )
    classes = tuple(sorted({c for c, _, _ in items}))
    index = {c: i for i, c in enumerate(classes)}
    if size is None:
        size = _common_size(items, source, split, size_if_mixed)
    images = np.stack([_decode(data, size) for _, _, data in items])
    labels = np.array([index[c] for c, _, _ in items], dtype=np.int64)
    cached.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cached, suffix=".npz") as tmp:  # np.savez adds .npz to other names
        np.savez(tmp, images=images, labels=labels, classes=np.array(classes))
    return ImageArray(images, labels, classes)


def align_classes(data: ImageArray, classes: tuple[str, ...]) -> ImageArray:
    """``data`` labelled in the order of ``classes`` (the training split's), so that a split
    missing some class folders is not silently numbered differently from the network's outputs."""
    unknown = sorted(set(data.classes) - set(classes))
    if unknown:
        raise ConfigError(
            f"class folder(s) {', '.join(unknown)} are not among the training split's {len(classes)}",
            hint="use the same class folder names in every split",
        )
    index = np.array([classes.index(c) for c in data.classes], dtype=np.int64)
    return ImageArray(data.images, index[data.labels], classes)


def to_tensor(images: np.ndarray, preprocessing: Preprocessing) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float N x 3 x H x W, normalized with ``preprocessing``."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std).view(1, 3, 1, 1)
    return (x - mean) / std


def resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop (4-px zero padding) and horizontal flip, per image."""
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=generator)
    dx = torch.randint(0, 9, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w)
    out = padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(3).view(1, 3, 1, 1), rows, cols]
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def batches(
    data: ImageArray,
    batch_size: int,
    preprocessing: Preprocessing,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    train_augment: bool = False,
    resolution: int | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) batches normalized with ``preprocessing``; shuffling and augmentation
    draw from ``generator``."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size].numpy()
        x = to_tensor(data.images[idx], preprocessing)
        if train_augment:
            assert generator is not None
            x = augment(x, generator)
        if resolution is not None:
            x = resize(x, resolution)
        yield x, torch.from_numpy(data.labels[idx])


def split_train_val(
    train: ImageArray, val_images: int | None = None, train_images: int | None = None
) -> tuple[ImageArray, ImageArray]:
    """(images trained on, held-out validation images) of a training split: a fixed shuffle
    (seed 12345) whose first ``val_images`` (None: :func:`held_out_count`) are held out;
    ``train_images`` caps the rest (None: all). Training, accuracy tables and the shipped
    calibration set all split this way."""
    if val_images is None:
        val_images = held_out_count(len(train))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(12345)).numpy()
    val_idx, train_idx = order[:val_images], order[val_images:]
    if train_images is not None:
        train_idx = train_idx[:train_images]
    pick = lambda idx: ImageArray(train.images[idx], train.labels[idx], train.classes)  # noqa: E731
    return pick(train_idx), pick(val_idx)
