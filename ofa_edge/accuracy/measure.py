"""Top-1 accuracy of one subnet: the single measurement behind training logs, tables and ``eval``.

A subnet taken out of a weight-sharing supernet carries BatchNorm statistics that belong to the
largest net, so its BN statistics are always re-estimated first (OFA's recipe) on a fixed set of
training images, then the subnet is evaluated at its own resolution.
"""

from __future__ import annotations

import torch

from ofa_edge.data import ImageArray, batches
from ofa_edge.supernet.bn import recalibrate_bn
from ofa_edge.supernet.elastic import ElasticSupernet
from ofa_edge.supernet.preprocessing import Preprocessing
from ofa_edge.supernet.space import ArchConfig

#: Images BN statistics are re-estimated on. OFA uses 2,000 for ImageNet; on the CIFAR-10
#: supernet, 1,000 moved top-1 by < 0.3 points from 2,000 (measured on 5 subnets, see README).
CALIB_IMAGES = 1000


@torch.no_grad()
def subnet_top1(
    net: ElasticSupernet,
    arch: ArchConfig,
    calib_images: ImageArray,
    eval_images: ImageArray,
    preprocessing: Preprocessing,
    *,
    calib_count: int = CALIB_IMAGES,
    batch_size: int = 256,
) -> float:
    """Top-1 (%) of ``arch`` on ``eval_images`` at ``arch.r``, BN recalibrated on ``calib_images``,
    both normalized with ``preprocessing`` (the supernet's registry entry's).

    BN statistics come from the first ``calib_count`` images of ``calib_images`` (pass a fixed,
    shuffled set, such as :func:`ofa_edge.accuracy.calibration.load_calibration_set`).
    The supernet's own weights and statistics are left untouched.
    """
    net.set_arch(arch)
    # torch's stubs lack Module.to's memory_format keyword, which it accepts and applies.
    subnet = net.get_active_subnet().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    recalibrate_bn(
        subnet, batches(calib_images, batch_size, preprocessing, resolution=arch.r), max_images=calib_count
    )
    subnet.eval()
    correct = 0
    for x, y in batches(eval_images, batch_size, preprocessing, resolution=arch.r):
        correct += int((subnet(x.to(memory_format=torch.channels_last)).argmax(1) == y).sum())
    return 100.0 * correct / len(eval_images)
