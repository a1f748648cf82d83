"""Layouts other than MIT's (stride 1 in the stem and early stages, for small images): feature-map
sizes, counts and LUT ops follow the strides, static subnets and configs match the supernet, and
weights never load into another layout unnoticed."""

from __future__ import annotations

import json
import random

import pytest
import torch
from torch import nn

from ofa_edge.errors import CheckpointError, ConfigError
from ofa_edge.lut.keys import subnet_ops
from ofa_edge.lut.micro import input_shape, op_module
from ofa_edge.supernet import MobileNetV3, OFAMobileNetV3
from ofa_edge.supernet.counting import Counts, count
from ofa_edge.supernet.family import spec_from_dict
from ofa_edge.supernet.registry import describe_supernet, get_supernet_info, list_supernets
from ofa_edge.supernet.spec import MBv3Spec
from ofa_edge.training import load_recipe

RESOLUTIONS = (24, 32)
#: Stem and first stage at stride 1: CIFAR's 32 px end as a 4x4 map instead of MIT's 1x1.
STRIDE1 = {"stem_stride": 1, "stage_strides": (1, 2, 2, 1, 2)}


def _net(**layout: object) -> OFAMobileNetV3:
    torch.manual_seed(0)
    net = OFAMobileNetV3(n_classes=10, width_mult=0.35, resolutions=RESOLUTIONS, **layout)  # type: ignore[arg-type]
    with torch.no_grad():  # non-trivial BN statistics, so eval-mode outputs depend on them
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def net() -> OFAMobileNetV3:
    return _net(**STRIDE1)


def _measured_counts(model: nn.Module, r: int) -> tuple[int, int, list[int]]:
    """MACs (convs + linear, as OFA counts), params and every conv's output side, by running it."""
    macs, sides = [0], []

    def hook(m: nn.Module, _: object, out: torch.Tensor) -> None:
        if isinstance(m, nn.Conv2d):
            macs[0] += out[0].numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            sides.append(out.shape[-1])
        else:
            macs[0] += m.in_features * m.out_features

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        model(torch.randn(1, 3, r, r))
    for h in handles:
        h.remove()
    return macs[0], sum(p.numel() for p in model.parameters()), sides


def test_feature_maps_and_counts_follow_the_strides(net: OFAMobileNetV3) -> None:
    arch = net.space.max_arch(32)
    blocks = net.spec.blocks(arch)
    assert net.spec.stem_size(32) == 32 and blocks[0].in_size == 32
    stage_out = [blocks[1 + 4 * i + 3].out_size for i in range(5)]
    assert stage_out == [32, 16, 8, 8, 4]  # MIT's layout: [8, 4, 2, 2, 1]
    net.set_arch(arch)
    macs, params, sides = _measured_counts(net.get_active_subnet(), 32)
    assert count(net.spec, arch) == Counts(macs, params)
    assert sides[0] == 32  # the stem conv's output
    mit = _net()
    assert count(mit.spec, arch).macs * 10 < macs  # the same blocks on 4-16x larger maps


def test_static_subnet_and_config_match_the_supernet(net: OFAMobileNetV3) -> None:
    net.sample_active_subnet(random.Random(4))
    x = torch.randn(2, 3, net.active_arch.r, net.active_arch.r)
    extracted = net.get_active_subnet().eval()
    torch.testing.assert_close(extracted(x), net(x), rtol=1e-5, atol=1e-5)
    config = json.loads(json.dumps(net.get_active_net_config()))
    assert config["supernet"]["stem_stride"] == 1 and config["supernet"]["stage_strides"] == [1, 2, 2, 1, 2]
    rebuilt = MobileNetV3.build_from_config(config)
    assert rebuilt.spec == net.spec and rebuilt.block_specs == extracted.block_specs
    rebuilt.load_state_dict(extracted.state_dict())
    assert torch.equal(rebuilt.eval()(x), extracted(x))
    # A config written before layouts existed is MIT's layout.
    for key in ("stem_stride", "stage_strides"):
        del config["supernet"][key]
    assert MobileNetV3.build_from_config(config).spec.is_mit_layout


def test_lut_ops_use_the_stem_stride(net: OFAMobileNetV3) -> None:
    ops = subnet_ops(net.spec, net.space.min_arch(24))
    assert ops[0].key == f"Conv-input:24x24x3-output:24x24x{net.spec.first_conv_width}"
    assert [op.output[:2] for op in ops[1:-4]] == [
        (b.out_size,) * 2 for b in net.spec.blocks(net.space.min_arch(24))
    ]
    stem = op_module(net.spec, ops[0]).eval()
    assert stem(torch.randn(input_shape(ops[0]))).shape[-1] == 24


def test_weights_refuse_another_layout(net: OFAMobileNetV3) -> None:
    mit, other = _net(), _net(stem_stride=1)
    assert "layout_strides" not in mit.state_dict()  # MIT's checkpoints stay loadable strictly
    with pytest.raises(
        CheckpointError, match=r"trained with stem stride 1, stage strides \[1, 2, 2, 1, 2\], "
    ):
        mit.load_state_dict(net.state_dict())
    with pytest.raises(
        CheckpointError, match=r"trained with stem stride 2, .* this supernet has stem stride 1"
    ):
        net.load_state_dict(mit.state_dict())
    with pytest.raises(CheckpointError, match=r"stage strides \[2, 2, 2, 1, 2\], this supernet has"):
        net.load_state_dict(other.state_dict())
    _net(**STRIDE1).load_state_dict(net.state_dict())


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"stem_stride": 3}, "stem_stride=3 is not 1 or 2"),
        ({"stage_strides": (1, 2)}, r"stage_strides=\[1, 2\]: expected 5 strides, each 1 or 2"),
    ],
)
def test_bad_layout_is_refused(layout: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MBv3Spec(**layout)


def test_v2_entry_is_what_its_recipe_trains() -> None:
    built = get_supernet_info("ofa-mbv3-cifar10-v2").build()
    assert built.spec == load_recipe("cifar10-v2").build().spec and not built.spec.is_mit_layout


def test_descriptions_carry_the_layout() -> None:
    """Latency tables rebuild their spec from the registry's description: strides included."""
    for info in list_supernets():
        description = describe_supernet(info.name)
        spec = info.build().spec
        assert spec_from_dict(description) == spec
        if isinstance(spec, MBv3Spec):  # MIT's layout: described as before families and strides
            assert "family" not in description and ("stem_stride" in description) != spec.is_mit_layout
        else:
            assert description["family"] == spec.family
