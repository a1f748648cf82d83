"""How a supernet's input images are normalized: the statistics its weights were trained with.

Each registry entry carries one; evaluation, BN recalibration, export calibration and training
normalize with it, since a network fed images normalized with another dataset's statistics
computes on shifted inputs and loses accuracy without any error.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preprocessing:
    """Per-channel (RGB) mean and std on the 0-1 scale: a pixel becomes ``(p / 255 - mean) / std``."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


#: CIFAR-10's training images: ofa-edge's own supernets are trained on these.
CIFAR10 = Preprocessing(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
#: ImageNet's (torchvision's values), which MIT's OFA supernets were trained and evaluated with.
IMAGENET = Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
