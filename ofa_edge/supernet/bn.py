"""BatchNorm recalibration: a subnet's running statistics recomputed on real data.

Weight sharing leaves BN statistics that belong to the largest net; OFA resets them on ~2,000
training images before any subnet is evaluated or exported. Works on static subnets and on the
supernet's active subnet alike (elastic BNs update only their active channels).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[Any], max_images: int = 2000) -> int:
    """Reset every BN's running stats and re-estimate them as a cumulative average over batches.

    ``batches`` yields image tensors or ``(images, labels)`` pairs. Returns the images used.
    The model keeps its train/eval mode and BN momentum afterwards.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(bn.momentum, bn.training) for bn in bns]
    was_training = model.training
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch weighs the same
    model.eval()
    for bn in bns:
        bn.train()
    seen = 0
    try:
        for batch in batches:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            images = images[: max_images - seen]
            model(images)
            seen += images.size(0)
            if seen >= max_images:
                break
    finally:
        for bn, (momentum, training) in zip(bns, saved):
            bn.momentum = momentum
            bn.train(training)
        model.train(was_training)
    if seen == 0:
        raise ValueError("recalibrate_bn: the data loader yielded no images")
    return seen
