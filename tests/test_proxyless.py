"""OFA-ProxylessNAS w1.3 as a supernet family: equal to MIT's ``OFAProxylessNASNets`` on fully
randomized weights (supernet and extracted subnets), MIT's counts, its arch configs, latency-table
ops and MIT's legacy ProxylessNAS YAML, a local table build, a constrained search and an export.
"""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ofa_edge.accuracy.predictor import AccuracyPredictor, ArchEncoder, load_predictor, save_predictor
from ofa_edge.deploy.specialize import specialize
from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.spec import local_device
from ofa_edge.errors import CheckpointError, ConfigError
from ofa_edge.export.check import BATCH, export_subnet, run_model
from ofa_edge.export.images import default_calibration, prepare_images
from ofa_edge.lut.build import build_table
from ofa_edge.lut.keys import enumerate_ops, subnet_ops
from ofa_edge.lut.micro import input_shape
from ofa_edge.lut.table import LatencyTable, LutError, SupernetRef, import_ofa
from ofa_edge.search.searcher import SubnetSearch
from ofa_edge.supernet.bn import recalibrate_bn
from ofa_edge.supernet.counting import count
from ofa_edge.supernet.family import spec_from_dict
from ofa_edge.supernet.ofa_proxyless import OFAProxylessNASNets, ProxylessNASNet
from ofa_edge.supernet.preprocessing import IMAGENET
from ofa_edge.supernet.proxyless import ProxylessSpec, proxyless_space
from ofa_edge.supernet.registry import get_supernet_info, load_supernet, write_entry
from ofa_edge.supernet.space import ArchConfig
from ofa_edge.testing.mit_reference import import_mit
from tests.mirror import serving
from tests.test_export import cli
from tests.test_mit_equivalence import _randomize, assert_counts_match, assert_outputs_match

mit_proxyless = import_mit("ofa.imagenet_classification.elastic_nn.networks.ofa_proxyless")

NAME = "ofa_proxyless_d234_e346_k357_w1.3"
#: A small ProxylessNAS for the table build and search: same layout, width 0.5, 10 classes, 32 px.
TINY = ProxylessSpec(0.5, 10, proxyless_space(resolutions=(32,)))


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, OFAProxylessNASNets]:
    mit = mit_proxyless.OFAProxylessNASNets(
        n_classes=1000,
        dropout_rate=0,
        width_mult=1.3,
        ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )
    _randomize(mit, seed=13)
    ours = get_supernet_info(NAME).build()
    assert isinstance(ours, OFAProxylessNASNets)
    ours.load_state_dict(mit.state_dict(), strict=True)
    return mit.eval(), ours.eval()


def _archs(ours: OFAProxylessNASNets, n: int, seed: int) -> list[ArchConfig]:
    space, rng = ours.space, random.Random(seed)
    sampled = [dataclasses.replace(space.sample(rng), r=rng.choice((128, 144, 160))) for _ in range(n)]
    return [space.max_arch(160), space.min_arch(128), *sampled]


def test_state_dict_is_mits(pair: tuple[torch.nn.Module, OFAProxylessNASNets]) -> None:
    mit, ours = pair
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in mit.state_dict().items()
    ]
    with pytest.raises(CheckpointError, match="does not fit OFAProxylessNASNets"):
        OFAProxylessNASNets(width_mult=1.0).load_state_dict(mit.state_dict())


def test_outputs_match_mit(pair: tuple[torch.nn.Module, OFAProxylessNASNets]) -> None:
    mit, ours = pair
    archs = _archs(ours, n=3, seed=5)
    assert_outputs_match(mit, ours, archs)
    for arch in archs:
        ours.set_arch(arch)
        static = ours.get_active_subnet()
        assert isinstance(static, ProxylessNASNet)
        bns = [m for m in static.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert bns and all(m.eps == 1e-3 for m in bns)  # ProxylessNAS's BN eps, not MBv3's 1e-5
        rebuilt = ProxylessNASNet.build_from_config(ours.get_active_net_config())
        assert [(k, v.shape) for k, v in rebuilt.state_dict().items()] == [
            (k, v.shape) for k, v in static.state_dict().items()
        ]


def test_counts_match_mit(pair: tuple[torch.nn.Module, OFAProxylessNASNets]) -> None:
    assert_counts_match(*pair, _archs(pair[1], n=3, seed=11))


@torch.no_grad()
def test_download_loads_mits_checkpoint_format(
    pair: tuple[torch.nn.Module, OFAProxylessNASNets], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry name downloads (from a loopback mirror) a checkpoint saved the way MIT's
    are, ``{"state_dict": ...}`` with the older ``mobile_inverted_conv`` keys, and loads it strictly."""
    mit, ours = pair
    # MIT's older checkpoints name the blocks' convs ``mobile_inverted_conv``.
    legacy = {
        re.sub(r"^(blocks\.\d+)\.conv\.", r"\1.mobile_inverted_conv.", k): v
        for k, v in mit.state_dict().items()
    }
    assert sum(".mobile_inverted_conv." in k for k in legacy) > 400
    torch.save({"state_dict": legacy, "epoch": 1}, tmp_path / NAME)
    with serving(tmp_path) as url:
        monkeypatch.setenv("OFA_EDGE_MIRROR", url)
        net = load_supernet(NAME)
    arch = ours.space.min_arch(128)
    net.set_arch(arch)
    mit.set_active_subnet(ks=list(arch.ks), e=list(arch.e), d=list(arch.d))
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    assert (net(x) - mit(x)).abs().max().item() <= 1e-5


def test_mit_arch_dicts_validate_and_bad_ones_are_named(
    pair: tuple[torch.nn.Module, OFAProxylessNASNets],
) -> None:
    mit, ours = pair
    random.seed(3)
    sampled = mit.sample_active_subnet()  # MIT's: 21 ks/e entries, 6 depths, the last 1
    arch = ArchConfig.from_dict({**sampled, "r": 224}).validate(ours.space)
    assert len(arch.ks) == 21 and arch.d[-1] == 1
    assert ours.space.max_arch().d == (4, 4, 4, 4, 4, 1)
    for change, message in [
        ({"d": [4, 4, 4, 4, 4, 2]}, r"d\[5\]=2 is not in \[1\]"),
        ({"d": [4, 4, 4, 4, 4]}, "d: 5 entries, expected 6"),
        ({"ks": [3] * 20}, "ks: 20 entries, expected 21"),
        ({"e": [3] * 20 + [5]}, r"e\[20\]=5 is not in \[3, 4, 6\]"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ArchConfig.from_dict({**sampled, "r": 224, **change}).validate(ours.space)
    ours.set_active_subnet(d=3)  # a scalar depth: every elastic stage; the fixed one keeps 1
    assert ours.runtime_depth == [3, 3, 3, 3, 3, 1]


def test_registry_entry_and_spec_records() -> None:
    info = get_supernet_info(NAME)
    assert info.preprocessing == IMAGENET and info.url is not None and info.url.endswith(NAME)
    assert info.spec.space.resolutions[0] == 128 and info.spec.space.resolutions[-1] == 224
    data = info.spec.to_dict()
    assert data["family"] == "proxyless" and spec_from_dict(data) == info.spec
    assert spec_from_dict(SupernetRef.named(NAME).to_dict()) == info.spec
    with pytest.raises(
        ConfigError,
        match="unknown supernet family 'resnet'; known: mbv3, ofa_resnet, proxyless .*'ofa_resnet'",
    ):
        spec_from_dict({**data, "family": "resnet"})
    with pytest.raises(ConfigError, match="a ProxylessNAS space has 6 stages"):
        ProxylessSpec(1.3, 1000, dataclasses.replace(info.spec.space, stage_depths=()))


def test_ops_use_mits_legacy_keys_and_modules_compute_them() -> None:
    spec = get_supernet_info(NAME).spec
    ops = enumerate_ops(spec, [128])
    keys = {op.key for op in ops}
    first = "expanded_conv-input:64x64x40-output:64x64x24-expand:1-kernel:3-stride:1-idskip:0"
    assert first in keys and "Conv-input:128x128x3-output:64x64x40" in keys
    assert "Conv_1-input:4x4x416-output:4x4x1664" in keys and "Logits-input:4x4x1664-output:1000" in keys
    assert not any("se:" in k or "hs:" in k for k in keys)
    arch = spec.space.sample(random.Random(1))
    arch = dataclasses.replace(arch, r=128)
    assert {op.key for op in subnet_ops(spec, arch)} <= keys
    # Every op's micro-model maps its input shape to its output shape.
    torch.manual_seed(0)
    for op in [o for o in ops if o.kind != "expanded_conv"] + [o for o in ops if o.kind == "expanded_conv"][
        :6
    ]:
        with torch.no_grad():
            y = spec.op_module(op).eval()(torch.randn(input_shape(op)))
        assert tuple(y.shape[1:]) in {op.output[::-1], op.output}, op.key


def _legacy_yaml(path: Path, spec: ProxylessSpec, r: int) -> dict[str, float]:
    """A table in MIT's mobile_trim.yaml format ({count, mean, var}) for ``spec``'s ops at ``r``."""
    rng = np.random.default_rng(0)
    means = {op.key: float(rng.uniform(0.1, 2.0)) for op in enumerate_ops(spec, [r])}
    path.write_text(yaml.safe_dump({k: {"count": 50, "mean": m, "var": 0.01 * m} for k, m in means.items()}))
    return means


def test_import_mits_legacy_proxyless_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = SupernetRef.named(NAME)
    path = tmp_path / "mobile_trim.yaml"
    means = _legacy_yaml(path, ref.spec, 160)  # type: ignore[arg-type]
    table = import_ofa(path, ref, device_name="pixel1")
    assert table.resolutions == [160] and len(table.entries[160]) == len(means)
    arch = ArchConfig.from_dict({**ref.spec.space.max_arch().to_dict(), "r": 160})
    expected = sum(means[op.key] for op in subnet_ops(ref.spec, arch))
    assert table.predict(arch) == pytest.approx(expected, rel=1e-12)
    assert LatencyTable.from_dict(table.to_dict()).predict(arch) == table.predict(arch)
    code, _, err = cli(
        capsys, "lut", "import-ofa", str(path), "--supernet", NAME, "--out", str(tmp_path / "t.json")
    )
    assert code == 0, err
    assert LatencyTable.load(tmp_path / "t.json").predict(arch) == table.predict(arch)
    bad = yaml.safe_load(path.read_text())
    next(iter(bad.values()))["var"] = -1.0
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(LutError, match="is not an OFA latency table"):
        import_ofa(path, ref)


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory: pytest.TempPathFactory) -> LatencyTable:
    """A table of the tiny ProxylessNAS measured on this machine at 32 px (one fast pass)."""
    tmp = tmp_path_factory.mktemp("lut")
    device = dataclasses.replace(local_device(), workdir=str(tmp / "agent"))
    fast = {"min_runs": 3, "min_seconds": 0.0, "batch_size": 16, "passes": 1}
    with AgentSession(device) as session:
        return build_table(session, SupernetRef("tiny-proxyless", TINY), [32], tmp / "lut.json", **fast)


def test_lut_build_measures_every_op(tiny_table: LatencyTable) -> None:
    assert set(tiny_table.entries[32]) == {op.key for op in enumerate_ops(TINY, [32])}
    assert all(e.median_ms > 0 for e in tiny_table.entries[32].values())
    assert LatencyTable.from_dict(tiny_table.to_dict()).spec == TINY


def test_search_under_latency_and_macs_budgets(tiny_table: LatencyTable) -> None:
    search = SubnetSearch("tiny-proxyless", TINY, {"local": tiny_table}, objective="macs", generations=20)
    low, high = search.latency_range("local")
    budget_ms, macs = low + 0.5 * (high - low), 0.8 * count(TINY, TINY.space.max_arch()).macs
    best = search.search(search.constraints({"local": budget_ms}, macs=macs)).best
    assert tiny_table.predict(best.arch) <= budget_ms and count(TINY, best.arch).macs <= macs
    assert best.arch.d[-1] == 1 and best.arch.validate(TINY.space) == best.arch
    assert best.costs[search.macs.key] == count(TINY, best.arch).macs


def test_export_runs_in_onnxruntime_as_the_torch_subnet(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = get_supernet_info(NAME).build().eval()
    arch = dataclasses.replace(net.space.sample(random.Random(4)), r=128)
    with np.load(default_calibration()) as z:
        images = z["images"][:24]
    out = tmp_path / "proxyless.onnx"
    report = export_subnet(net, NAME, arch, "onnx", "fp32", images[:16], out, val_images=images[16:])
    assert report.fp32_max_abs_diff < 1e-4 and report.input_shape == [1, 3, 128, 128]
    x = prepare_images(images[16:20], 128, IMAGENET)
    net.set_arch(arch)
    sub = net.get_active_subnet()
    calib = torch.from_numpy(prepare_images(images[:16], 128, IMAGENET))
    recalibrate_bn(sub, calib.split(BATCH), max_images=len(calib))
    with torch.no_grad():
        expected = sub.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_model(out, x), expected, atol=1e-4)


def test_specialize_a_proxyless_supernet_entry_on_this_machine(tmp_path: Path) -> None:
    """An entry file of one's own ProxylessNAS (random weights and predictor) goes the whole way:
    table, calibration, search, export, push, verify, on the local device."""
    torch.manual_seed(0)
    net = TINY.build()
    torch.save(net.state_dict(), tmp_path / "tiny.pt")
    entry = write_entry(
        tmp_path / "tiny-proxyless.toml",
        name="tiny-proxyless",
        description="a tiny OFA-ProxylessNAS for tests",
        spec=TINY,
        preprocessing=IMAGENET,
        weights=tmp_path / "tiny.pt",
    )
    assert entry.spec == TINY and "family" in (tmp_path / "tiny-proxyless.toml").read_text()
    predictor = save_predictor(
        AccuracyPredictor(ArchEncoder.for_space(TINY.space)), tmp_path / "p.pt", "tiny-proxyless"
    )
    assert load_predictor(predictor).predictor.encoder.n_blocks == 21
    device = dataclasses.replace(local_device(), workdir=str(tmp_path / "agent"))
    run = specialize(
        device,
        tmp_path / "out",
        supernet=entry.name,  # the entry file read above: its name resolves to it
        resolutions=[32],
        predictor=predictor,
        validate_samples=6,
        passes=1,
        generations=30,
    )
    summary = run.to_dict()
    arch = run.choice.best.arch
    assert arch.d[-1] == 1 and len(arch.ks) == 21
    assert summary["search"]["costs"]["latency on local"] <= summary["search"]["budget_ms"]
    assert summary["deployment"]["measured_ms"] > 0
    assert summary["deployment"]["file"]["sha256"] == summary["export"]["sha256"]
