"""Every supernet family through the steps that take any family's arch, the same steps for each:
``count`` of an arch file in MIT's keys; a small table of the local device checked by ``lut
validate`` (random subnets of the family's space, predicted vs measured whole); an arch file
predicted by ``lut predict``, exported by ``ofa-edge export`` (checked before it is written) and
pushed with ``push --verify`` against the table; and ``specialize`` of a ResNet with no predictor
(``objective="macs"``)."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch

from ofa_edge.deploy.specialize import specialize
from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.spec import local_device
from ofa_edge.lut.build import build_table
from ofa_edge.lut.table import DeviceRecord, LatencyTable, Runtime, SupernetRef
from ofa_edge.lut.validate import calibration_archs, random_archs, validate
from ofa_edge.supernet import registry
from ofa_edge.supernet.family import FamilySpec, at_resolution
from ofa_edge.supernet.preprocessing import CIFAR10
from ofa_edge.supernet.resnet_spec import ResNetArch, ResNetSpace, ResNetSpec
from ofa_edge.supernet.space import SearchSpace
from ofa_edge.supernet.spec import MBv3Spec
from tests.test_export import cli

#: One tiny supernet of each family, at two resolutions (tables measure in seconds).
FAMILIES: dict[str, FamilySpec] = {
    "mbv3": MBv3Spec(0.35, 10, SearchSpace(resolutions=(32, 40))),
    "ofa_resnet": ResNetSpec(
        10,
        ResNetSpace(
            depth_list=(0, 1), expand_ratio_list=(0.25,), width_mult_list=(0.65,), resolutions=(32, 40)
        ),
    ),
}
FAST = {"min_runs": 3, "min_seconds": 0.0, "batch_size": 16, "passes": 1}


@pytest.fixture(params=FAMILIES)
def supernet(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> registry.SupernetInfo:
    """The family's tiny supernet, in the registry for this test only (as ``tiny-FAMILY``)."""
    info = registry.SupernetInfo(f"tiny-{request.param}", "a test's", FAMILIES[request.param], CIFAR10)
    monkeypatch.setitem(registry._SUPERNETS, info.name, info)
    return info


@pytest.mark.parametrize("name", ["ofa_mbv3_d234_e346_k357_w1.0", "ofa_resnet50"])
def test_count_reads_an_arch_file_in_mits_keys(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``count --arch`` reads each family's arch file (``image_size`` for ``r``, as MIT writes it;
    ``--r`` overrides it) and counts the MACs the family's spec counts."""
    spec = registry.get_supernet_info(name).spec
    arch = spec.space.sample(random.Random(7))
    path = tmp_path / "arch.json"
    path.write_text(
        json.dumps({k: v for k, v in arch.to_dict().items() if k != "r"} | {"image_size": arch.r})
    )
    for extra, expected in (([], arch), (["--r", "128"], at_resolution(arch, 128))):
        code, stdout, err = cli(capsys, "--json", "count", "--supernet", name, "--arch", str(path), *extra)
        assert code == 0, err
        doc = json.loads(stdout)
        assert doc["arch"] == expected.to_dict() and doc["macs"] == spec.count(expected).macs


def test_calibration_subnets_start_with_the_smallest_of_every_resolution(
    supernet: registry.SupernetInfo,
) -> None:
    table = LatencyTable(
        SupernetRef(supernet.name, supernet.spec),
        DeviceRecord("pi"),
        Runtime("onnxruntime"),
        entries={32: {}, 40: {}},
    )
    space = table.spec.space
    archs = calibration_archs(table, 16, 8, seed=0)
    assert len(archs) == 16 and archs[:2] == [space.min_arch(32), space.min_arch(40)]
    assert archs[2:] == random_archs(table, 14, 0)
    # The family's own archs, drawn from its space at the table's resolutions.
    assert {a.validate(space).r for a in archs[2:]} == {32, 40}
    # Anchors would be more than a third of the fit: random subnets only.
    assert calibration_archs(table, 8, 4, seed=0) == random_archs(table, 8, 0)


def test_validate_export_and_push_verify_on_local(
    supernet: registry.SupernetInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = supernet.spec
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OFA_EDGE_INVENTORY", raising=False)  # only `local`
    lut = tmp_path / "lut.json"
    device = dataclasses.replace(local_device(), workdir=str(tmp_path / "agent"))
    with AgentSession(device) as session:
        build_table(session, SupernetRef(supernet.name, spec), [32], lut, **FAST)
        report = validate(session, lut, samples=8, plot=tmp_path / "fit.png", work=tmp_path, rounds=1)
    table = LatencyTable.load(lut)
    assert table.calibration is not None and table.calibration.subnets == report.fitted_on == 4
    assert table.calibration == report.calibration and report.held_out == 4 and len(report.points) == 8
    assert set(report.to_dict()["calibrated"]) == {"within_10pct", "mape_pct", "spearman"}
    assert (tmp_path / "fit.png").read_bytes()[:4] == b"\x89PNG"
    for point in report.points:
        assert point.op_sum_ms == table.op_sum(point.arch) and point.measured_ms > 0
    small = spec.space.min_arch(32)
    cal = table.calibration
    assert table.predict(small) == pytest.approx(
        cal.a * table.op_sum(small) + cal.c * table.op_count(small) + cal.b
    )
    assert cal.c == 0.0, "4 subnets are too few for the per-op term"

    arch = at_resolution(spec.space.sample(random.Random(5)), 32)
    mit_keys = {k: v for k, v in arch.to_dict().items() if k != "r"} | {"image_size": 32}
    Path("arch.json").write_text(json.dumps(mit_keys))
    export = ["export", "arch.json", "--supernet", supernet.name, "--format", "onnx", "--random-weights"]
    code, stdout, err = cli(
        capsys, "--json", *export, "--calib-default", "--calib-images", "16", "--out", "model.onnx"
    )
    assert code == 0, err
    exported = json.loads(stdout)
    assert exported["arch"] == arch.to_dict() and exported["checks"]["fp32_max_abs_diff"] < 1e-4

    code, stdout, err = cli(capsys, "--json", "lut", "predict", str(lut), "--arch", "arch.json")
    assert code == 0, err
    assert json.loads(stdout)["predicted_ms"] == pytest.approx(table.predict(arch))

    push = ["push", "local", "model.onnx", "--verify", "--lut", str(lut), "--rounds", "1"]
    code, stdout, err = cli(capsys, "--json", *push)
    assert code == 0, err
    pushed = json.loads(stdout)
    assert pushed["arch"] == arch.to_dict() and pushed["verified"] and pushed["measured_ms"] > 0
    assert pushed["predicted_ms"] == pytest.approx(table.predict(arch))
    assert pushed["outputs"]["ok"] and pushed["outputs"]["images"] > 0


def test_specialize_a_resnet_without_a_predictor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """OFA-ResNet through the whole job on ``local`` with ``objective="macs"`` (the way for a
    supernet without a predictor of its resolutions): table, calibration, search, export, push."""
    spec = FAMILIES["ofa_resnet"]
    info = registry.SupernetInfo("tiny-ofa_resnet", "a test's", spec, CIFAR10)
    monkeypatch.setitem(registry._SUPERNETS, info.name, info)
    torch.manual_seed(0)
    torch.save(spec.build().state_dict(), tmp_path / "weights.pt")
    device = dataclasses.replace(local_device(), workdir=str(tmp_path / "agent"))
    run = specialize(
        device,
        tmp_path / "out",
        supernet=info.name,
        resolutions=[32],
        checkpoint=tmp_path / "weights.pt",
        objective="macs",
        validate_samples=6,
        passes=1,
        generations=30,
    )
    summary, best = run.to_dict(), run.choice.best
    assert summary["search"]["objective"] == "macs" and summary["search"]["predicted_top1"] is None
    assert isinstance(best.arch, ResNetArch) and best.score == spec.count(best.arch).macs
    assert summary["search"]["costs"]["latency on local"] <= summary["search"]["budget_ms"]
    assert ResNetArch.from_dict(json.loads((tmp_path / "out" / "subnet.json").read_text())) == best.arch
    assert summary["deployment"]["measured_ms"] > 0
    assert summary["deployment"]["file"]["sha256"] == summary["export"]["sha256"]
    assert "M MACs (the most under the budget" in run.choice.score_text
