"""Latency tables: MIT's layout and sums reproduced, the JSON format guarded against bad files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from ofa_edge.lut import LatencyTable, LutError, enumerate_ops, export_ofa, import_ofa
from ofa_edge.lut.table import Calibration, Reference, SupernetRef
from ofa_edge.supernet import OFAMobileNetV3
from ofa_edge.supernet.spec import MBv3Spec
from ofa_edge.testing.mit_reference import import_mit
from tests.conftest import NOTE10

W12 = "ofa_mbv3_d234_e346_k357_w1.2"


@pytest.fixture(scope="module")
def note10() -> LatencyTable:
    return import_ofa(NOTE10, SupernetRef.named(W12))


def test_enumeration_matches_mit_table_layout() -> None:
    spec = MBv3Spec(width_mult=1.2)
    for r in (160, 176, 192, 208, 224):
        mit_keys = set(yaml.safe_load((NOTE10 / f"{r}_lookup_table.yaml").read_text()))
        ours = {op.key for op in enumerate_ops(spec, [r])}
        assert ours == mit_keys and len(ours) == 96


def test_imported_note10_predictions_equal_mit_sums(note10: LatencyTable) -> None:
    mit_lut_mod = import_mit("ofa.nas.efficiency_predictor.latency_lookup_table")
    mit_mbv3 = import_mit("ofa.imagenet_classification.elastic_nn.networks.ofa_mbv3")
    table = note10
    mit_net = mit_mbv3.OFAMobileNetV3(
        n_classes=1000,
        dropout_rate=0,
        width_mult=1.2,
        ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )
    rng = random.Random(0)
    space = OFAMobileNetV3(width_mult=1.2).space
    checked = 0
    for r in table.resolutions:
        mit_table = object.__new__(mit_lut_mod.MBv3LatencyTable)
        mit_table.lut = yaml.safe_load((NOTE10 / f"{r}_lookup_table.yaml").read_text())
        for _ in range(4):
            arch = space.sample(rng)
            arch = type(arch)(arch.ks, arch.e, arch.d, r)
            mit_net.set_active_subnet(ks=list(arch.ks), e=list(arch.e), d=list(arch.d))
            expected = mit_table.predict_network_latency(mit_net.get_active_subnet(False), r)
            assert table.predict(arch) == pytest.approx(expected, rel=1e-12)
            checked += 1
    assert checked == 20


def test_json_and_yaml_round_trips(tmp_path: Path, note10: LatencyTable) -> None:
    table = note10
    table.save(tmp_path / "lut.json")
    again = LatencyTable.load(tmp_path / "lut.json")
    assert again.to_dict() == table.to_dict()
    export_ofa(again, tmp_path / "yaml")
    back = import_ofa(tmp_path / "yaml", SupernetRef.named(W12))
    medians = lambda t: {(r, k): e.median_ms for r, sec in t.entries.items() for k, e in sec.items()}  # noqa: E731
    assert medians(back) == medians(table)


def test_missing_resolution_is_named(note10: LatencyTable) -> None:
    table = note10
    arch = OFAMobileNetV3(width_mult=1.2).space.max_arch(128)
    with pytest.raises(LutError, match=r"no entry for Conv-input:128x128x3.*needed at r=128"):
        table.predict(arch)


def _sub(old: str, new: str):
    return lambda text: text.replace(old, new)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda text: text[: len(text) // 2], "is not valid JSON .*truncated"),
        (_sub('"schema_version": 8', '"schema_version": 9'), "schema_version 9; .*reads up to 8"),
        (_sub('"kind": "ofa-edge/latency-table"', '"kind": "x"'), "is not an ofa-edge latency table"),
        (_sub('"precision": "fp32"', '"precision": "fp16"'), "precision 'fp16'"),
        (
            lambda text: json.dumps({**json.loads(text), "entries": {"160": {"Conv-x": {"median": 1}}}}),
            "is malformed",
        ),
    ],
)
def test_bad_tables_are_refused(tmp_path: Path, mangle, message: str, note10: LatencyTable) -> None:
    table = note10
    good = tmp_path / "lut.json"
    table.save(good)
    bad = tmp_path / "bad.json"
    bad.write_text(mangle(good.read_text()))
    with pytest.raises(LutError, match=message):
        LatencyTable.load(bad)


def test_schema_1_tables_still_load(tmp_path: Path, note10: LatencyTable) -> None:
    data = note10.to_dict()
    data["schema_version"] = 1
    del data["reference"]
    old = tmp_path / "v1.json"
    old.write_text(json.dumps(data))
    table = LatencyTable.load(old)
    assert table.reference is None and table.entries == note10.entries
    entry = next(iter(table.entries[table.resolutions[0]].values()))
    assert entry.passes_ms is None and entry.passes == [entry.median_ms]  # before schema 6: one pass


def test_older_calibrations_read_without_the_newer_terms(tmp_path: Path, note10: LatencyTable) -> None:
    data = note10.to_dict()
    data["schema_version"] = 2
    data["calibration"] = {"a": 1.1, "b": 0.5}
    old = tmp_path / "v2.json"
    old.write_text(json.dumps(data))
    table = LatencyTable.load(old)
    arch = table.spec.space.max_arch(table.resolutions[0])
    assert table.predict(arch) == 1.1 * table.op_sum(arch) + 0.5
    assert table.calibration == Calibration(a=1.1, b=0.5)  # c and q read as 0, nothing else recorded
    table.calibration = Calibration(a=1.1, b=0.5, c=-0.01)
    assert table.predict(arch) == pytest.approx(1.1 * table.op_sum(arch) - 0.01 * table.op_count(arch) + 0.5)
    table.calibration = Calibration(a=1.1, b=0.5, c=-0.01, q=0.02)  # schema 5: the curvature
    s, n = table.op_sum(arch), table.op_count(arch)
    assert table.predict(arch) == pytest.approx(1.1 * s + 0.02 * s * s - 0.01 * n + 0.5)
    assert table.op_count(arch) == 2 + sum(arch.d) + 4  # first conv and block, the blocks, the final ops


def test_schema_4_and_5_metadata_read_with_their_defaults(tmp_path: Path, note10: LatencyTable) -> None:
    data = note10.to_dict()
    data["schema_version"] = 4
    data["calibration"] = {"a": 0.9, "b": 0.1, "c": -0.01, "subnets": 20, "fitted": "2026-01-01", "seed": 0}
    data["reference"] = {"model": "min subnet", "resolution": 160, "median_ms": 2.0, "measured": "2026-01-01"}
    old = tmp_path / "v4.json"
    old.write_text(json.dumps(data))
    table = LatencyTable.load(old)
    assert table.calibration == Calibration(0.9, 0.1, -0.01, 0.0, 20, "2026-01-01", 0, None)  # q: schema 5
    assert table.reference == Reference("min subnet", 160, 2.0, "2026-01-01", [2.0], "bracketed")
    assert table.device.name == "imported" and table.runtime.name == "unknown (imported from OFA)"


def test_supernet_layouts_and_unknown_keys_round_trip(note10: LatencyTable) -> None:
    """A table of a CIFAR layout (strides in its supernet description) is read into its spec and
    written back unchanged, with keys this version does not know."""
    data = note10.to_dict()
    data["supernet"] = {**data["supernet"], "stem_stride": 1, "stage_strides": [1, 2, 2, 1, 2], "later": "x"}
    table = LatencyTable.from_dict(data)
    assert table.spec.stem_stride == 1 and table.spec.stage_strides == (1, 2, 2, 1, 2)
    assert table.supernet.id == W12 and table.supernet.extra == {"later": "x"}
    assert json.dumps(table.to_dict()) == json.dumps(data)  # same keys, same order, same values
    assert LatencyTable.from_dict(note10.to_dict()).supernet == note10.supernet
