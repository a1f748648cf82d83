"""Small ImageFolder datasets written on the spot: for tests and benchmarks of training, with no
dataset to download."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_image_folder(
    root: Path, classes: int, per_class: int, size: int = 32, split: str = "train"
) -> Path:
    """``root/split/class<i>/<j>.png``: ``per_class`` noisy images per class, each class its own
    mean colour, so a network can learn them in a few steps. Returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / split / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array([60 + 60 * c % 200, 200 - 50 * c % 200, 128], dtype=float)
        for i in range(per_class):
            img = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{i}.png")
    return root
