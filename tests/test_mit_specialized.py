"""MIT's specialized nets: files written by MIT's own code load into ofa-edge and compute what
MIT's nets compute, in both of MIT's key styles; malformed files fail in one line naming the key;
an id downloads once (sha256 recorded); and such a net exports to ONNX and benches on `local`.

The nets are subnets MIT's supernets extract (MobileNetV3 w1.2, ProxylessNAS w1.3) with every
weight and BN statistic randomized, saved as MIT publishes its specialized nets: net.config,
run.config and init.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ofa_edge.errors import CheckpointError, ConfigError, UnknownName
from ofa_edge.files import cache_dir
from ofa_edge.supernet.specialized import (
    SpecializedNet,
    get_specialized_info,
    list_specialized,
    load_specialized,
    parse_net_config,
)
from ofa_edge.testing.mit_reference import import_mit
from tests.mirror import serving
from tests.test_cli import error_line, run
from tests.test_cli_commands import ok, sha256
from tests.test_mit_equivalence import _randomize

mit_mbv3 = import_mit("ofa.imagenet_classification.elastic_nn.networks.ofa_mbv3")
mit_proxyless = import_mit("ofa.imagenet_classification.elastic_nn.networks.ofa_proxyless")
mit_networks = import_mit("ofa.imagenet_classification.networks")

TOL = 1e-5
IMAGE_SIZE = {"mbv3": 176, "proxyless": 160}


def _old_style(config: dict[str, Any], state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """The config and state dict as MIT's older code saved them: blocks under
    ``mobile_inverted_conv`` (an ``MBInvertedConvLayer``), identity shortcuts with list widths."""
    config = copy.deepcopy(config)
    for block in config["blocks"]:
        conv = block.pop("conv")
        conv["name"] = "MBInvertedConvLayer"
        del conv["groups"]
        block.update(name="MobileInvertedResidualBlock", mobile_inverted_conv=conv)
        if block["shortcut"] is not None:
            block["shortcut"].update(in_channels=[conv["in_channels"]], out_channels=[conv["out_channels"]])
    renamed = {k.replace(".conv.", ".mobile_inverted_conv.", 1) if k.startswith("blocks.") else k: v
               for k, v in state.items()}  # fmt: skip
    return config, renamed


@functools.cache
def mit_subnet(family: str) -> torch.nn.Module:
    """MIT's static subnet of a random arch of its supernet ("mbv3": MobileNetV3 w1.2,
    "proxyless": ProxylessNAS w1.3), every weight random."""
    torch.manual_seed(3)
    if family == "mbv3":
        supernet = mit_mbv3.OFAMobileNetV3(
            dropout_rate=0.1,
            width_mult=1.2,
            ks_list=[3, 5, 7],
            expand_ratio_list=[3, 4, 6],
            depth_list=[2, 3, 4],
        )
    else:
        supernet = mit_proxyless.OFAProxylessNASNets(
            width_mult=1.3, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
        )
    supernet.set_active_subnet(ks=[3, 5, 7, 5] * 5, e=[3, 4, 6, 4, 6] * 4, d=[2, 3, 4, 3, 2])
    net = supernet.get_active_subnet(preserve_weight=True)
    _randomize(net, seed=5)
    return net.eval()


@pytest.fixture(params=["mbv3", "proxyless"])
def mit_net(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module]:
    """(family, MIT's static subnet), for each family of MIT's specialized nets."""
    return request.param, mit_subnet(request.param)


def write_mit_folder(folder: Path, family: str, net: torch.nn.Module, old_keys: bool = False) -> Path:
    """Save ``net`` as MIT publishes a specialized net: net.config, run.config, init."""
    config, state = net.config, net.state_dict()
    if old_keys:
        config, state = _old_style(config, state)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.config").write_text(json.dumps(config, indent=4))
    (folder / "run.config").write_text(json.dumps({"image_size": IMAGE_SIZE[family]}))
    torch.save({"state_dict": state}, folder / "init")
    return folder


@pytest.mark.parametrize("old_keys", [False, True], ids=["conv", "mobile_inverted_conv"])
@torch.no_grad()
def test_loads_mit_files_and_computes_what_mit_computes(
    mit_net: tuple[str, torch.nn.Module], old_keys: bool, tmp_path: Path
) -> None:
    family, mit = mit_net
    folder = write_mit_folder(tmp_path / "net", family, mit, old_keys)
    config = json.loads((folder / "net.config").read_text())
    assert ("mobile_inverted_conv" in config["blocks"][1]) == old_keys
    # The file is MIT's format: MIT's own loader builds it.
    rebuilt = mit_networks.get_net_by_name(config["name"]).build_from_config(copy.deepcopy(config))
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in mit.parameters())

    ours = load_specialized(folder)
    assert isinstance(ours, SpecializedNet) and ours.image_size == IMAGE_SIZE[family]
    assert not ours.training and ours.layout.kind == type(mit).__name__
    eps = {m.eps for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert eps == {1e-5 if family == "mbv3" else 1e-3}
    x = torch.randn(2, 3, ours.image_size, ours.image_size, generator=torch.Generator().manual_seed(1))
    expected = mit(x)
    assert expected.abs().max() > 1e-2, "degenerate outputs would prove nothing"
    assert (ours(x) - expected).abs().max().item() <= TOL


def test_the_catalogue_of_mit_specialized_nets() -> None:
    import ofa_edge

    assert ofa_edge.list_specialized is list_specialized and ofa_edge.load_specialized is load_specialized
    nets = list_specialized()
    assert len(nets) == len({n.id for n in nets}) == 50
    families = {s: sum(n.supernet == s for n in nets) for s in {n.supernet for n in nets}}
    assert families == {
        "ofa_mbv3_d234_e346_k357_w1.2": 10,
        "ofa_mbv3_d234_e346_k357_w1.0": 24,
        "ofa_proxyless_d234_e346_k357_w1.3": 16,
    }
    note10 = get_specialized_info("note10_lat@64ms_top1@80.2_finetune@75")
    assert (note10.target, note10.budget, note10.unit, note10.top1, note10.finetune_epochs) == (
        "note10",
        64,
        "ms",
        80.2,
        75,
    )
    assert note10.url("init").endswith("/ofa/ofa_specialized/note10_lat-64ms_top1-80.2_finetune-75/init")
    assert get_specialized_info("flops@389M_top1@79.1_finetune@75").unit == "MFLOPs"
    with pytest.raises(UnknownName, match="did you mean note10_lat@64ms_top1@80.2_finetune@75"):
        get_specialized_info("note10_lat@64ms_top1@80.2")


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server laid out as MIT's file host: (its URL, the served net's folder)."""
    note10 = get_specialized_info("note10_lat@64ms_top1@80.2_finetune@75")
    folder = tmp_path / "mirror" / "ofa_specialized" / note10.folder_name
    served = write_mit_folder(folder, "mbv3", mit_subnet("mbv3"))

    with serving(tmp_path / "mirror") as url:
        yield url, served


@torch.no_grad()
def test_an_id_downloads_once_and_its_hashes_are_checked(
    mirror: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = mirror
    net_id = "note10_lat@64ms_top1@80.2_finetune@75"
    monkeypatch.setenv("OFA_EDGE_MIRROR", url)
    cached = cache_dir() / "specialized" / "note10_lat-64ms_top1-80.2_finetune-75"
    assert load_specialized(net_id, pretrained=False).image_size == IMAGE_SIZE["mbv3"]
    assert sorted(p.name for p in cached.iterdir() if p.suffix != ".sha256") == ["net.config", "run.config"]
    net = load_specialized(net_id)
    for name in ("net.config", "run.config", "init"):
        assert (cached / name).read_bytes() == (served / name).read_bytes()
        assert (cached / f"{name}.sha256").read_text().strip() == sha256(served / name)
    monkeypatch.setenv("OFA_EDGE_MIRROR", "http://127.0.0.1:9")  # offline: the cache serves it
    x = torch.randn(1, 3, net.image_size, net.image_size)
    assert torch.equal(load_specialized(net_id)(x), net(x))
    (cached / "run.config").write_text(json.dumps({"image_size": 224}))
    with pytest.raises(CheckpointError, match="run.config has sha256 .* delete"):
        load_specialized(net_id)


def _mbv3_config() -> dict[str, Any]:
    supernet = mit_mbv3.OFAMobileNetV3(width_mult=1.0, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6])
    supernet.set_active_subnet(ks=3, e=3, d=2)
    return supernet.get_active_subnet(preserve_weight=False).config


def _set(path: str, value: Any) -> Any:
    """A change to net.config: ``path``'s value (dotted, ``blocks[i]`` indexing) set, or deleted
    when ``value`` is ``...``."""

    def change(config: dict[str, Any]) -> None:
        *parents, last = path.replace("[", ".").replace("]", "").split(".")
        node: Any = config
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is ...:
            del node[last]
        else:
            node[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("name", "ResNets"), "name = 'ResNets' is not supported (only MobileNetV3, ProxylessNASNets)"),
        (_set("blocks[2].conv", ...), "blocks[2] has neither conv nor mobile_inverted_conv"),
        (_set("blocks[2].conv.kernel_size", "5"), 'blocks[2].conv.kernel_size = "5" is not an integer'),
        (
            _set("blocks[3].conv.in_channels", 40),
            "blocks[3].conv.in_channels = 40, but the layer before gives",
        ),
        (_set("first_conv.groups", 2), "first_conv.groups = 2 is not supported (only 1)"),
        (
            _set("first_conv.stride", 3),
            "first_conv: kernel_size 3 and stride 3 (odd kernels, strides 1 or 2)",
        ),
        (_set("blocks[1].conv.act_func", "gelu"), "blocks[1].conv.act_func = 'gelu' is not supported"),
        (_set("blocks[1].conv.dilation", 2), "blocks[1].conv.dilation is not a key of this layer"),
        (_set("blocks[1].shortcut", {"name": "IdentityLayer"}), "blocks[1].shortcut: an identity shortcut"),
        (_set("final_expand_layer", ...), "final_expand_layer is missing (a MobileNetV3 has one)"),
        (
            _set("classifier.in_features", 1000),
            "classifier.in_features = 1000, but the layer before gives 1280",
        ),
        (_set("bn.ws_eps", 1e-5), "bn.ws_eps = 1e-05 is not supported (only null)"),
    ],
)
def test_a_malformed_net_config_is_one_line_naming_the_key(change: Any, message: str) -> None:
    config = _mbv3_config()
    parse_net_config(copy.deepcopy(config), 224, "x/net.config")  # the unchanged file is fine
    change(config)
    with pytest.raises(ConfigError) as err:
        parse_net_config(config, 224, "x/net.config")
    assert str(err.value).startswith(f"x/net.config: {message}") and "\n" not in str(err.value)


def test_weights_that_do_not_fit_are_refused(mit_net: tuple[str, torch.nn.Module], tmp_path: Path) -> None:
    family, mit = mit_net
    folder = write_mit_folder(tmp_path / "net", family, mit)
    state = mit.state_dict()
    state["classifier.linear.weight"] = state["classifier.linear.weight"][:10]
    del state["first_conv.bn.running_var"]
    torch.save({"state_dict": state}, folder / "init")
    with pytest.raises(CheckpointError, match="1 missing key.*first_conv.bn.running_var.*classifier.linear"):
        load_specialized(folder)
    (folder / "run.config").write_text("{}")
    with pytest.raises(ConfigError, match="run.config: image_size is missing"):
        load_specialized(folder)


def test_export_and_bench_on_local_through_the_cli(tmp_path: Path) -> None:
    import onnxruntime as ort

    family, mit = "mbv3", mit_subnet("mbv3")
    folder = write_mit_folder(tmp_path / "note10", family, mit, old_keys=True)
    listed = ok("supernets", "--specialized")
    assert len(listed["specialized"]) == 50 and listed["schema"] == "ofa-edge/specialized/1"

    model = tmp_path / "mit.onnx"
    doc = ok(
        "export",
        "--specialized",
        str(folder),
        "--format",
        "onnx",
        "--calib-images",
        "16",
        "--out",
        str(model),
    )
    assert doc["specialized"] == str(folder) and doc["supernet"] is None and doc["arch"] is None
    r = IMAGE_SIZE[family]
    assert doc["input_shape"] == [1, 3, r, r] and doc["sha256"] == sha256(model)
    assert doc["checks"]["fp32_max_abs_diff"] <= 1e-3
    record = json.loads(model.with_name("mit.onnx.export.json").read_text())
    assert record["specialized"] == str(folder)
    x = np.random.default_rng(0).standard_normal((1, 3, r, r)).astype(np.float32)
    got = ort.InferenceSession(str(model)).run(None, {"input": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, mit(torch.from_numpy(x)).numpy(), atol=1e-3)

    bench = ok("bench", "local", str(model), "--runs", "3")
    assert bench["runtime"] == "onnxruntime" and bench["runs"] >= 3 and bench["median_ms"] > 0

    both = run("export", "arch.json", "--specialized", str(folder), "--format", "onnx", "--out", "x.onnx")
    assert "export takes a subnet's ARCH.json or --specialized ID|DIR" in error_line(both, 2)
    weights = run(
        "export", "--specialized", str(folder), "--checkpoint", "w.pt", "--format", "onnx", "--out", "x.onnx"
    )
    assert "a specialized net's weights are its init file" in error_line(weights, 2)
    (folder / "net.config").write_text(
        json.dumps({**json.loads((folder / "net.config").read_text()), "name": "X"})
    )
    bad = run("export", "--specialized", str(folder), "--format", "onnx", "--out", str(tmp_path / "y.onnx"))
    assert f"{folder / 'net.config'}: name = 'X' is not supported" in error_line(bad, 2)
