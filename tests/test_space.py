"""Arch configs and subnet selection: validation errors name the field, value and allowed set."""

from __future__ import annotations

import json
import random

import pytest

from ofa_edge.errors import ConfigError
from ofa_edge.supernet import ArchConfig, OFAMobileNetV3, SearchSpace

SPACE = SearchSpace()


@pytest.fixture(scope="module")
def net() -> OFAMobileNetV3:
    return OFAMobileNetV3(width_mult=0.5, n_classes=10)


def test_json_round_trip_and_ofa_aliases(tmp_path) -> None:
    arch = SPACE.sample(random.Random(3))
    assert ArchConfig.from_json(arch.to_json()) == arch
    path = tmp_path / "a.json"
    arch.save(path)
    assert ArchConfig.load(path) == arch
    # OFA prints image_size, and its evolution finder r as a one-element list, plus wid=None.
    ofa_style = {"wid": None, "ks": list(arch.ks), "e": list(arch.e), "d": list(arch.d)}
    assert ArchConfig.from_dict({**ofa_style, "image_size": arch.r}) == arch
    assert ArchConfig.from_dict({**ofa_style, "r": [arch.r]}) == arch


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ks": [3] * 19}, "ks: 19 entries, expected 20"),
        ({"ks": [3] * 5 + [9] + [3] * 14}, "ks[5]=9 is not in [3, 5, 7]"),
        ({"e": [6] * 20 + [6]}, "e: 21 entries, expected 20"),
        ({"e": [3] * 19 + [5]}, "e[19]=5 is not in [3, 4, 6]"),
        ({"d": [2, 3, 5, 4, 4]}, "d[2]=5 is not in [2, 3, 4]"),
        ({"r": 100}, "r=100 is not a resolution of this space; allowed: 128..224 step 4"),
        ({"r": 130}, "r=130 is not a resolution"),
    ],
)
def test_bad_arch_names_field(change: dict, message: str) -> None:
    data = {**SPACE.max_arch().to_dict(), **change}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ArchConfig.from_dict(data).validate(SPACE)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ks": [3], "e": [3], "d": [2], "r": 128, "kernel": 3}, "unknown field"),
        ({"ks": [3], "e": [3], "r": 128}, r"missing field\(s\) \['d'\]"),
        ({"ks": [3], "e": [3], "d": [2]}, "missing field r"),
        ({"ks": [3], "e": [3], "d": [2], "r": "big"}, "is not an integer"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_malformed_arch_dicts(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ArchConfig.from_dict(data)  # type: ignore[arg-type]


def test_unreadable_arch_file(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: arch: not valid JSON"):
        ArchConfig.load(bad)
    with pytest.raises(ConfigError, match="cannot read arch file"):
        ArchConfig.load(tmp_path / "missing.json")


def test_set_active_subnet_scalars_lists_and_errors(net: OFAMobileNetV3) -> None:
    net.set_active_subnet(ks=5, e=4, d=3)
    assert net.active_arch.ks == (5,) * 20 and net.active_arch.d == (3,) * 5
    net.set_active_subnet(d=[2, 3, 4, 2, 3])  # others untouched
    assert net.active_arch.ks == (5,) * 20 and net.runtime_depth == [2, 3, 4, 2, 3]
    with pytest.raises(ValueError, match=r"ks\[0\]=4 is not in \[3, 5, 7\]"):
        net.set_active_subnet(ks=4)
    with pytest.raises(ValueError, match="d: 4 entries, expected 5"):
        net.set_active_subnet(d=[2, 2, 2, 2])
    with pytest.raises(ValueError, match=r"d\[0\]=5"):
        net.set_active_subnet(d=5)
    with pytest.raises(ValueError, match="unexpected argument kernel_size"):
        net.set_active_subnet(kernel_size=3)
    with pytest.raises(ValueError, match="r=100 is not a resolution"):
        net.set_active_subnet(r=100)
    net.set_active_subnet(**{**SPACE.min_arch().to_dict(), "wid": None})
    assert net.active_arch == SPACE.min_arch()


def test_sample_and_config_rebuild(net: OFAMobileNetV3) -> None:
    import torch

    from ofa_edge.supernet import MobileNetV3

    arch = net.sample_active_subnet(random.Random(5))
    assert ArchConfig.from_dict(arch) == net.active_arch
    config = json.loads(json.dumps(net.get_active_net_config()))
    rebuilt = MobileNetV3.build_from_config(config)
    extracted = net.get_active_subnet()
    assert [tuple(v.shape) for v in rebuilt.state_dict().values()] == [
        tuple(v.shape) for v in extracted.state_dict().values()
    ]
    rebuilt.load_state_dict(extracted.state_dict())
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(rebuilt.eval()(x), extracted.eval()(x))


def test_set_max_and_min(net: OFAMobileNetV3) -> None:
    net.set_max_net()
    assert net.active_arch.ks == (7,) * 20 and net.active_arch.e == (6,) * 20
    net.set_min_net()
    assert net.active_arch.d == (2,) * 5
