"""The latency tables the project ships (``latency_tables/``): current, complete, calibrated, and
what ``ofa-edge search`` finds by device name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ofa_edge.cli.common import DEFAULT_SUPERNET
from ofa_edge.lut.keys import enumerate_ops
from ofa_edge.lut.store import load_table_for, shipped_tables_dir
from ofa_edge.lut.table import PASSES, SCHEMA_VERSION, LatencyTable, table_timing
from ofa_edge.supernet.registry import get_supernet_info
from ofa_edge.supernet.space import ArchConfig
from tests.test_cli import run

SHIPPED = sorted(shipped_tables_dir().glob("*.json"))
TEST_BED = ("testbed-local", "testbed-sshd")
CIFAR = DEFAULT_SUPERNET


def test_the_test_bed_devices_have_tables_for_the_default_supernet() -> None:
    names = {p.name for p in SHIPPED}
    assert {f"{d}_{CIFAR}_fp32_t1.json" for d in TEST_BED} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_a_shipped_table_is_current_complete_and_calibrated(path: Path) -> None:
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    supernet = data["supernet"]["id"]
    spec = get_supernet_info(supernet).build().spec
    table = load_table_for(path, supernet, spec)
    assert path.name.startswith(f"{table.device.name}_{supernet}_{table.precision}_t{table.threads}")
    assert table.calibration and table.calibration.subnets is not None and table.calibration.subnets >= 8
    assert table_timing(table) == "interleaved"
    for r in table.resolutions:
        assert {op.key for op in enumerate_ops(spec, [r])} <= set(table.entries[r])
        assert all(len(e.passes) >= PASSES for e in table.entries[r].values()), "built in fewer passes"
    small, big = (
        table.predict(spec.space.min_arch(min(table.resolutions))),
        table.predict(spec.space.max_arch()),
    )
    assert 0 < small < big


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_a_shipped_table_written_again_is_the_same_file(path: Path, tmp_path: Path) -> None:
    """Typed in memory, the same bytes on disk: the format did not change."""
    LatencyTable.load(path).save(tmp_path / path.name)
    assert (tmp_path / path.name).read_bytes() == path.read_bytes()


def test_search_on_two_test_bed_devices_by_name(tmp_path: Path) -> None:
    spec = get_supernet_info(CIFAR).build().spec
    budgets = []
    for device in TEST_BED:
        table = load_table_for(shipped_tables_dir() / f"{device}_{CIFAR}_fp32_t1.json", CIFAR, spec)
        assert table.device.name == device
        low, high = table.predict(spec.space.min_arch(24)), table.predict(spec.space.max_arch(40))
        budgets.append((low + high) / 2)
    args = [x for d, b in zip(TEST_BED, budgets) for x in ("--device", d, "--latency-ms", f"{b:.4f}")]
    res = run("--json", "search", *args, "--generations", "30", "--out", "arch.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (best,) = json.loads(res.stdout)["results"]
    for device, budget in zip(TEST_BED, budgets):
        assert best["latency_ms"][device] <= budget
    assert 0.5 < best["score"] < 1, "the shipped predictor's top-1, as a fraction"
    assert ArchConfig.load(tmp_path / "arch.json").to_dict() == best["arch"]
