"""Our OFA-ResNet50 against MIT's ``OFAResNets``, on fully randomized weights.

Every weight and BN statistic is random, MIT's state dict loads into ours strictly, and outputs
must agree within 1e-5 through the supernet and the extracted subnets (48-px inputs keep the CPU
cost low; the network is resolution-agnostic). MACs and params must equal MIT's counters on
MIT's own extracted subnets. Bad arch values fail with one line naming the field.
"""

from __future__ import annotations

import random
import re

import pytest
import torch

from ofa_edge.errors import CheckpointError, ConfigError
from ofa_edge.supernet.ofa_resnet import OFAResNet, ResNet
from ofa_edge.supernet.resnet_spec import ResNetArch, ResNetSpace, ResNetSpec
from ofa_edge.testing.mit_reference import import_mit
from tests.test_mit_equivalence import _randomize

mit_resnets = import_mit("ofa.imagenet_classification.elastic_nn.networks.ofa_resnets")
mit_utils = import_mit("ofa.utils.pytorch_utils")

TOL = 1e-5
SPEC = ResNetSpec()
SPACE = SPEC.space


def _mit_supernet() -> torch.nn.Module:
    return mit_resnets.OFAResNets(
        n_classes=1000,
        depth_list=[0, 1, 2],
        expand_ratio_list=[0.2, 0.25, 0.35],
        width_mult_list=[0.65, 0.8, 1.0],
    )


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, OFAResNet]:
    mit = _mit_supernet()
    _randomize(mit, seed=50)
    ours = OFAResNet(SPEC)
    ours.load_state_dict(mit.state_dict(), strict=True)
    return mit.eval(), ours.eval()


def _archs(n: int, seed: int) -> list[ResNetArch]:
    rng = random.Random(seed)
    sampled = [SPACE.sample(rng) for _ in range(n)]
    return [SPACE.max_arch(128), SPACE.min_arch(128)] + [ResNetArch(a.d, a.e, a.w, 128) for a in sampled]


def _activate(mit: torch.nn.Module, arch: ResNetArch) -> None:
    mit.set_active_subnet(d=list(arch.d), e=list(arch.e), w=list(arch.w))


def test_state_dict_keys_and_shapes_are_mits(pair: tuple[torch.nn.Module, OFAResNet]) -> None:
    mit, ours = pair
    theirs = [(k, tuple(v.shape)) for k, v in mit.state_dict().items()]
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == theirs
    assert len(theirs) == 368


@torch.no_grad()
def test_outputs_match_mit(pair: tuple[torch.nn.Module, OFAResNet]) -> None:
    mit, ours = pair
    g = torch.Generator().manual_seed(1)
    archs = _archs(n=3, seed=7)
    assert {a.d[0] for a in archs} == {0, 2}  # the stem's residual block both skipped and run
    for arch in archs:
        _activate(mit, arch)
        ours.set_arch(arch)
        x = torch.randn(1, 3, 48, 48, generator=g)
        expected = mit(x)
        assert expected.abs().max() > 1e-2, "degenerate outputs would prove nothing"
        assert (ours(x) - expected).abs().max().item() <= TOL, arch
        ours_static = ours.get_active_subnet(preserve_weight=True).eval()
        assert (ours_static(x) - expected).abs().max().item() <= TOL, arch
        assert (mit.get_active_subnet(preserve_weight=True).eval()(x) - expected).abs().max().item() <= TOL
        assert not any("Elastic" in type(m).__name__ for m in ours_static.modules())
        rebuilt = ResNet.build_from_config(ours.get_active_net_config())
        assert [v.shape for v in rebuilt.state_dict().values()] == [
            v.shape for v in ours_static.state_dict().values()
        ]


def test_counts_match_mit(pair: tuple[torch.nn.Module, OFAResNet]) -> None:
    mit, ours = pair
    for arch in _archs(n=3, seed=11):
        _activate(mit, arch)
        mit_static = mit.get_active_subnet(preserve_weight=False)
        c = SPEC.count(arch)
        # MIT accumulates in float32: allow its rounding, nothing more.
        assert c.macs == pytest.approx(
            mit_utils.count_net_flops(mit_static, (1, 3, arch.r, arch.r)), rel=1e-6
        )
        assert c.params == mit_utils.count_parameters(mit_static)
        ours.set_arch(arch)
        assert c.params == sum(p.numel() for p in ours.get_active_subnet().parameters())


def test_mit_arch_dicts_load_and_bad_values_fail_in_one_line() -> None:
    rng = random.Random(3)
    mit_dict = {"d": [2, 0, 1, 2, 0], "e": [0.25] * 18, "w": [0, 1, 2, 1, 0, 2], "image_size": 160}
    arch = ResNetArch.from_dict(mit_dict).validate(SPACE)
    assert arch.r == 160 and arch.to_dict()["w"] == [0, 1, 2, 1, 0, 2]
    assert ResNetArch.from_dict(arch.to_dict()) == arch
    a = SPACE.sample(rng)
    bad = {
        "d[0]=1 is not in [0, 2] (d[0] skips the input stem's residual block": {
            **a.to_dict(),
            "d": [1, 0, 0, 0, 0],
        },
        "d[3]=3 is not in [0, 1, 2]": {**a.to_dict(), "d": [0, 0, 0, 3, 0]},
        "e[17]=0.3 is not in [0.2, 0.25, 0.35]": {**a.to_dict(), "e": [0.25] * 17 + [0.3]},
        "e: 20 entries, expected 18": {**a.to_dict(), "e": [0.25] * 20},
        "w[2]=3 is not in [0, 1, 2]": {**a.to_dict(), "w": [0, 0, 3, 0, 0, 0]},
        "r=100 is not a resolution of this space; allowed: 128..224 step 4": {**a.to_dict(), "r": 100},
    }
    for message, data in bad.items():
        with pytest.raises(ConfigError, match=re.escape(message)) as err:
            ResNetArch.from_dict(data).validate(SPACE)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['ks'\]"):
        ResNetArch.from_dict({**a.to_dict(), "ks": [3]})
    with pytest.raises(ConfigError, match=r"missing field\(s\) \['w'\]"):
        ResNetArch.from_dict({"d": a.d, "e": a.e, "r": 128})
    net = OFAResNet(ResNetSpec(10, ResNetSpace(resolutions=(128,))))
    with pytest.raises(ConfigError, match="set_active_subnet: unexpected argument ks=3"):
        net.set_active_subnet(ks=3)
    with pytest.raises(CheckpointError, match="does not fit OFAResNet.*10 classes.*shape mismatch"):
        net.load_state_dict(OFAResNet().state_dict())


def test_ops_cover_every_subnet_and_sum_to_its_counts() -> None:
    resolutions = (128, 160)
    table = {op.key: op for r in resolutions for op in SPEC.distinct_ops(r)}
    rng = random.Random(5)
    for _ in range(200):
        a = SPACE.sample(rng)
        arch = ResNetArch(a.d, a.e, a.w, rng.choice(resolutions))
        ops = SPEC.ops(arch)
        assert all(op.key in table for op in ops)
        assert sum(SPEC.op_counts(op).macs for op in ops) == SPEC.count(arch).macs
    kinds = {op.kind for op in table.values()}
    assert kinds == {"Conv", "ResConv", "Conv_1", "MaxPool", "bottleneck", "AvgPool2D", "Logits"}
    assert "bottleneck-input:32x32x64-output:32x32x256-mid:88-stride:1-downsample:1" in table


@torch.no_grad()
def test_op_modules_run_the_ops_shapes() -> None:
    arch = SPACE.sample(random.Random(9))
    arch = ResNetArch((2, *arch.d[1:]), arch.e, arch.w, 128)
    total = 0
    for op in SPEC.ops(arch):
        h, w, c = op.input
        module = SPEC.op_module(op).eval()
        y = module(torch.zeros(1, c, h, w))
        assert tuple(y.shape) == (1, op.output[-1], *op.output[:2][: y.dim() - 2]), op.key
        total += sum(p.numel() for p in module.parameters())
        assert SPEC.op_peak(op) >= c * h * w + y.numel()
    assert total == SPEC.count(arch).params
