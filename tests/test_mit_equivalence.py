"""Our OFA-MobileNetV3 against MIT's own implementation, on fully randomized weights.

Every weight, BN statistic and kernel-transformation matrix is random (identity matrices would
hide mistakes in the 7->5->3 kernel transform), the state dict goes from MIT's model into ours
strictly, and outputs must agree within 1e-5 through the supernet and the extracted subnets.
MACs and params must equal MIT's counters on MIT's own extracted subnets.
"""

from __future__ import annotations

import random

import pytest
import torch

from ofa_edge.supernet import ArchConfig, OFAMobileNetV3
from ofa_edge.supernet.counting import count
from ofa_edge.supernet.elastic import ElasticSupernet
from ofa_edge.testing.mit_reference import import_mit

mit_mbv3 = import_mit("ofa.imagenet_classification.elastic_nn.networks.ofa_mbv3")
mit_utils = import_mit("ofa.utils.pytorch_utils")

TOL = 1e-5


@torch.no_grad()
def _randomize(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("_matrix"):
            p.copy_(torch.eye(p.shape[0]) + 0.1 * torch.randn(p.shape, generator=g))
        elif p.dim() > 1:
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
        elif name.endswith("bn.weight"):
            p.copy_(0.5 + torch.rand(p.shape, generator=g))
        else:
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
    for name, b in model.named_buffers():
        if name.endswith("running_var"):
            b.copy_(0.5 + torch.rand(b.shape, generator=g))
        elif name.endswith("running_mean"):
            b.copy_(0.1 * torch.randn(b.shape, generator=g))


@pytest.fixture(scope="module", params=[1.0, 1.2], ids=["w1.0", "w1.2"])
def pair(request: pytest.FixtureRequest) -> tuple[torch.nn.Module, OFAMobileNetV3]:
    width = request.param
    mit = mit_mbv3.OFAMobileNetV3(
        n_classes=1000,
        dropout_rate=0,
        width_mult=width,
        ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )
    _randomize(mit, seed=int(width * 10))
    ours = OFAMobileNetV3(n_classes=1000, width_mult=width)
    ours.load_state_dict(mit.state_dict(), strict=True)
    return mit.eval(), ours.eval()


def _archs(ours: OFAMobileNetV3, n: int, seed: int) -> list[ArchConfig]:
    space, rng = ours.space, random.Random(seed)
    return [space.max_arch(224), space.min_arch(128)] + [space.sample(rng) for _ in range(n)]


def test_official_key_layout_w1_0() -> None:
    from tests.conftest import MIT_DATA

    rows = [
        line.split("\t") for line in (MIT_DATA / "ofa_mbv3_w1.0_state_dict_keys.tsv").read_text().splitlines()
    ]
    expected = [(name, shape) for name, shape, _ in rows]
    ours = [(k, str(tuple(v.shape))) for k, v in OFAMobileNetV3().state_dict().items()]
    assert ours == expected


@torch.no_grad()
def assert_outputs_match(mit: torch.nn.Module, ours: ElasticSupernet, archs: list[ArchConfig]) -> None:
    """Through the supernets and both extracted subnets, MIT's and ours agree within TOL."""
    g = torch.Generator().manual_seed(1)
    for arch in archs:
        mit.set_active_subnet(ks=list(arch.ks), e=list(arch.e), d=list(arch.d))
        ours.set_arch(arch)
        x = torch.randn(2, 3, arch.r, arch.r, generator=g)
        expected = mit(x)
        assert expected.abs().max() > 1e-2, "degenerate outputs would prove nothing"
        assert (ours(x) - expected).abs().max().item() <= TOL, arch
        ours_static = ours.get_active_subnet(preserve_weight=True).eval()
        mit_static = mit.get_active_subnet(preserve_weight=True).eval()
        assert (ours_static(x) - expected).abs().max().item() <= TOL, arch
        assert (mit_static(x) - expected).abs().max().item() <= TOL, arch
        assert not any("Elastic" in type(m).__name__ for m in ours_static.modules())


def assert_counts_match(mit: torch.nn.Module, ours: ElasticSupernet, archs: list[ArchConfig]) -> None:
    """Our MACs and params equal MIT's counters on MIT's extracted subnets, and our subnets' params."""
    for arch in archs:
        mit.set_active_subnet(ks=list(arch.ks), e=list(arch.e), d=list(arch.d))
        mit_static = mit.get_active_subnet(preserve_weight=False)
        mit_macs = mit_utils.count_net_flops(mit_static, (1, 3, arch.r, arch.r))
        c = count(ours.spec, arch)
        # MIT accumulates in float32: allow its rounding, nothing more.
        assert c.macs == pytest.approx(mit_macs, rel=1e-6)
        assert c.params == mit_utils.count_parameters(mit_static)
        ours.set_arch(arch)
        assert c.params == sum(p.numel() for p in ours.get_active_subnet().parameters())


def test_outputs_match_mit(pair: tuple[torch.nn.Module, OFAMobileNetV3]) -> None:
    assert_outputs_match(*pair, _archs(pair[1], n=4, seed=7))


def test_counts_match_mit(pair: tuple[torch.nn.Module, OFAMobileNetV3]) -> None:
    assert_counts_match(*pair, _archs(pair[1], n=3, seed=11))


def test_published_w1_0_macs() -> None:
    net = OFAMobileNetV3()
    assert round(count(net.spec, net.space.max_arch(224)).macs / 1e6, 1) == 566.2
    assert round(count(net.spec, net.space.min_arch(224)).macs / 1e6, 1) == 121.3


@torch.no_grad()
def test_channel_sorting_matches_mit() -> None:
    mit = mit_mbv3.OFAMobileNetV3(
        n_classes=10,
        dropout_rate=0,
        width_mult=1.0,
        ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )
    _randomize(mit, seed=3)
    ours = OFAMobileNetV3(n_classes=10)
    ours.load_state_dict(mit.state_dict())
    for stage in (0, 1):
        mit.re_organize_middle_weights(expand_ratio_stage=stage)
        ours.re_organize_middle_weights(expand_ratio_stage=stage)
        theirs = mit.state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in ours.state_dict().items()), stage
