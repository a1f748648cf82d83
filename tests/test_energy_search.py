"""Energy per op in latency tables (built where the device has power rails) and energy budgets
in the search: ``SubnetSearch.constraints(energy_mj=...)`` and ``ofa-edge search --energy-mj``."""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

import pytest

from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.spec import local_device
from ofa_edge.errors import ConfigError
from ofa_edge.lut.build import build_table
from ofa_edge.lut.keys import subnet_ops
from ofa_edge.lut.table import LatencyTable
from ofa_edge.search import SubnetSearch
from ofa_edge.search.costs import CostKey
from ofa_edge.supernet.space import ArchConfig
from ofa_edge.testing.jetson import ORIN_NANO_JP6
from tests.test_cli_commands import ok
from tests.test_jetson import on_board
from tests.test_lut_build import FAST, SUPERNET

SHIPPED = Path(__file__).parents[1] / "latency_tables" / "testbed-local_ofa-mbv3-cifar10_fp32_t1.json"
WATTS = 5.0  # the made-up device power of the tables given energy below


def test_table_built_on_a_board_with_rails_carries_energy_per_op(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_board(ORIN_NANO_JP6, tmp_path / "board", monkeypatch)
    spec = dataclasses.replace(local_device(), workdir=str(tmp_path / "agent"))
    out = tmp_path / "lut.json"
    with AgentSession(spec) as session:
        table = build_table(session, SUPERNET, [32], out, **{**FAST, "passes": 2})
    assert table.has_energy
    entries = [e for section in table.entries.values() for e in section.values()]
    for entry in entries:
        assert entry.passes_mj is not None and len(entry.passes_mj) == len(entry.passes) == 2
        assert entry.energy_mj == statistics.median(entry.passes_mj) > 0
    again = LatencyTable.load(out)
    assert again.has_energy and again.to_dict() == table.to_dict()


def test_a_table_without_rails_is_written_without_energy(tmp_path: Path) -> None:
    table = LatencyTable.load(SHIPPED)
    assert not table.has_energy
    entry = next(iter(next(iter(table.entries.values())).values()))
    assert "energy_mj" not in entry.to_dict() and "passes_mj" not in entry.to_dict()


def with_energy(path: Path) -> LatencyTable:
    """The shipped table, each op given the energy of WATTS over its latency, saved at ``path``."""
    table = LatencyTable.load(SHIPPED)
    for section in table.entries.values():
        for entry in section.values():
            entry.energy_mj = WATTS * entry.median_ms
    table.save(path)
    return table


def energy_of(table: LatencyTable, arch: ArchConfig) -> float:
    section = table.entries[arch.r]
    return sum(section[op.key].energy_mj or 0.0 for op in subnet_ops(table.spec, arch))


def test_search_meets_an_energy_budget(tmp_path: Path) -> None:
    table = with_energy(tmp_path / "lut.json")
    search = SubnetSearch("ofa-mbv3-cifar10", table.spec, {"orin": table}, objective="macs", generations=30)
    space = table.spec.space
    low, high = energy_of(table, space.min_arch(24)), energy_of(table, space.max_arch(40))
    budget = (low + high) / 2
    best = search.search(search.constraints(energy_mj={"orin": budget})).best
    predicted = best.costs[CostKey("energy", "orin")]
    assert predicted <= budget and predicted == pytest.approx(energy_of(table, best.arch), rel=1e-9)
    plain = SubnetSearch(
        "ofa-mbv3-cifar10", table.spec, {"orin": LatencyTable.load(SHIPPED)}, objective="macs"
    )
    with pytest.raises(ConfigError, match="no table with energy per op for device 'orin'"):
        plain.constraints(energy_mj={"orin": budget})


def test_cli_search_energy_budget(tmp_path: Path) -> None:
    table = with_energy(tmp_path / "lut.json")
    space = table.spec.space
    budget = (energy_of(table, space.min_arch(24)) + energy_of(table, space.max_arch(40))) / 2
    doc = ok(
        "search", "--supernet", "ofa-mbv3-cifar10", "--device", "orin", "--lut", str(tmp_path / "lut.json"),
        "--energy-mj", str(budget), "--generations", "30",
    )  # fmt: skip
    (best,) = doc["results"]
    assert best["energy_mj"]["orin"] <= budget
    assert best["energy_mj"]["orin"] == pytest.approx(
        energy_of(table, ArchConfig.from_dict(best["arch"])), rel=1e-9
    )
