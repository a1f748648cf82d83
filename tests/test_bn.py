"""BN recalibration sets running statistics from data, on static subnets and the supernet."""

from __future__ import annotations

import torch

from ofa_edge.supernet import OFAMobileNetV3
from ofa_edge.supernet.bn import recalibrate_bn


def _batches(n: int, mean: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(mean + torch.randn(8, 3, 64, 64, generator=g), torch.zeros(8)) for _ in range(n)]


def test_first_bn_stats_follow_the_data() -> None:
    net = OFAMobileNetV3(width_mult=0.5, n_classes=10, resolutions=(64,))
    net.set_min_net()
    subnet = net.get_active_subnet().eval()
    batches = _batches(4, mean=3.0)
    used = recalibrate_bn(subnet, batches, max_images=24)
    assert used == 24
    assert not subnet.training and subnet.first_conv.bn.momentum == 0.1
    # With equal batches, the first BN's running mean is the conv output's channel mean.
    x = torch.cat([b[0] for b in batches])[:24]
    with torch.no_grad():
        expected = subnet.first_conv.conv(x).mean((0, 2, 3))
    assert torch.allclose(subnet.first_conv.bn.running_mean, expected, atol=1e-4)


def test_supernet_active_channels_only() -> None:
    net = OFAMobileNetV3(width_mult=0.5, n_classes=10, resolutions=(64,))
    net.set_min_net()
    bn = net.blocks[1].conv.inverted_bottleneck.bn.bn
    mid = net.active_block_specs()[1].mid
    recalibrate_bn(net, _batches(2, mean=1.0))
    assert bool((bn.running_mean[:mid] != 0).all())
    assert bool((bn.running_mean[mid:] == 0).all()), "inactive channels were reset, never updated"
    # After recalibration the supernet and its extracted subnet agree in eval mode.
    x = torch.randn(2, 3, 64, 64)
    net.eval()
    assert torch.allclose(net(x), net.get_active_subnet().eval()(x), atol=1e-5)
