"""Search: vectorized costs equal the scalar references, budgets hold, infeasible budgets answer at once.

Tables: MIT's Note10 tables for the w1.2 space, imported (device "note10"), and a second
device "slowpi" made from them with made-up latencies (each entry x1.7 plus a per-key
deterministic jitter) and a made-up calibration (a=1.1, b=0.8 ms, c=-0.05 ms per op, q=0.002/ms).
"""

from __future__ import annotations

import json
import random
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from ofa_edge.accuracy.predictor import AccuracyPredictor, ArchEncoder, save_predictor
from ofa_edge.lut import LatencyTable, LutError, import_ofa
from ofa_edge.lut.store import find_table
from ofa_edge.lut.table import Calibration, DeviceRecord, SupernetRef
from ofa_edge.search import InfeasibleError, Population, SubnetSearch, peak_activation_bytes
from ofa_edge.search.costs import CostKey
from ofa_edge.supernet.counting import count
from ofa_edge.supernet.space import ArchConfig
from tests.conftest import NOTE10
from tests.test_cli import error_line, run
from tests.test_registry import _closed_port

W12 = "ofa_mbv3_d234_e346_k357_w1.2"
GENERATIONS = 120


@pytest.fixture(scope="module")
def tables() -> tuple[LatencyTable, LatencyTable]:
    note10 = import_ofa(NOTE10, SupernetRef.named(W12), device_name="note10")
    slow = LatencyTable.from_dict(note10.to_dict())
    slow.device = DeviceRecord("slowpi", {"made_up": True})
    for section in slow.entries.values():
        for key, entry in section.items():
            entry.median_ms = entry.median_ms * 1.7 + (zlib.crc32(key.encode()) % 100) / 500
    slow.calibration = Calibration(a=1.1, b=0.8, c=-0.05, q=0.002)
    return note10, slow


@pytest.fixture(scope="module")
def predictor(tables: tuple[LatencyTable, LatencyTable]) -> AccuracyPredictor:
    torch.manual_seed(0)
    model = AccuracyPredictor(ArchEncoder.for_space(tables[0].spec.space, tables[0].resolutions))
    model.base_acc.fill_(0.75)
    return model


@pytest.fixture(scope="module")
def searcher(tables: tuple[LatencyTable, LatencyTable], predictor: AccuracyPredictor) -> SubnetSearch:
    return SubnetSearch(W12, tables[0].spec, by_name(tables), predictor, generations=GENERATIONS)


def by_name(tables: tuple[LatencyTable, ...]) -> dict[str, LatencyTable]:
    """Each table under the name of the device it was measured on."""
    return {t.device.name: t for t in tables}


def _random_archs(searcher: SubnetSearch, n: int, seed: int) -> list[ArchConfig]:
    rng = random.Random(seed)
    space, res = searcher.genome.space, searcher.genome.resolutions
    return [ArchConfig(a.ks, a.e, a.d, rng.choice(res)) for a in (space.sample(rng) for _ in range(n))]


def _check(
    searcher: SubnetSearch, arch: ArchConfig, tables: tuple[LatencyTable, ...]
) -> dict[CostKey, float]:
    spec = tables[0].spec
    c = count(spec, arch)
    return {
        **{CostKey("latency", t.device.name): t.predict(arch) for t in tables},
        CostKey("macs"): c.macs,
        CostKey("params"): c.params,
        CostKey("file_size"): 4 * c.params,
        CostKey("peak_memory"): peak_activation_bytes(spec, arch),
    }


def test_vectorized_costs_equal_scalar_references(searcher: SubnetSearch, tables) -> None:
    archs = _random_archs(searcher, 300, seed=0)
    pop = Population.from_archs(archs, searcher.genome)
    active = searcher.genome.active(pop.d)
    costs = [
        *searcher.latency.values(),
        searcher.macs,
        searcher.params,
        searcher.file_size,
        searcher.peak_memory,
    ]
    assert [c.key.label for c in costs[:2]] == ["latency on note10", "latency on slowpi"]
    for cost in costs:
        got = cost.evaluate(pop, active)
        expected = [_check(searcher, a, tables)[cost.key] for a in archs]
        assert np.array_equal(got, np.asarray(expected)), cost.key  # bit-exact, calibration included
    assert (
        tables[1].calibration
        and len(set(np.round(searcher.latency["slowpi"].evaluate(pop, active), 6))) > 100
    )


def test_found_subnets_meet_every_budget_on_every_device(searcher: SubnetSearch, tables) -> None:
    budgets = {"note10": 22.0, "slowpi": 40.0}
    cons = searcher.constraints(budgets, macs=230e6, params=6.5e6, file_bytes=26e6, peak_bytes=7e6)
    out = searcher.search(cons, seed=3, top=5)
    assert 1 <= len(out.candidates) <= 5
    assert len({json.dumps(c.arch.to_dict()) for c in out.candidates}) == len(out.candidates)
    scores = [c.score for c in out.candidates]
    assert scores == sorted(scores, reverse=True)
    for cand in out.candidates:
        truth = _check(searcher, cand.arch, tables)
        assert cand.costs == pytest.approx(truth, rel=1e-12)
        assert truth[CostKey("latency", "note10")] <= 22.0 and truth[CostKey("latency", "slowpi")] <= 40.0
        assert truth[CostKey("macs")] <= 230e6 and truth[CostKey("params")] <= 6.5e6
        assert truth[CostKey("file_size")] <= 26e6 and truth[CostKey("peak_memory")] <= 7e6
        assert cand.score == pytest.approx(
            float(
                searcher.engine.objective(
                    Population.from_archs([cand.arch], searcher.genome),
                    searcher.genome.active(Population.from_archs([cand.arch], searcher.genome).d),
                )[0]
            )
        )
    # The search beats the best of 300 random feasible subnets under the same budgets.
    _, random_scores = searcher.random_feasible(cons, 300, seed=1)
    assert len(random_scores) == 300 and out.best.score >= random_scores.max()


def test_deterministic_per_seed(searcher: SubnetSearch) -> None:
    cons = searcher.constraints({"note10": 18.0})
    first = [c.to_dict() for c in searcher.search(cons, seed=7, top=3).candidates]
    again = [c.to_dict() for c in searcher.search(cons, seed=7, top=3).candidates]
    assert first == again


def test_infeasible_budget_answers_at_once_with_the_exact_minimum(searcher: SubnetSearch, tables) -> None:
    cost = searcher.latency["slowpi"]
    minimum, arg = cost.minimum(searcher.genome)
    (arch,) = arg.archs(searcher.genome)
    assert tables[1].predict(arch) == minimum  # reached by a real subnet
    samples = [tables[1].predict(a) for a in _random_archs(searcher, 2000, seed=5)]
    assert min(samples) > minimum  # nothing random gets below it
    start = time.perf_counter()
    with pytest.raises(InfeasibleError) as info:
        searcher.search(searcher.constraints({"note10": 30.0, "slowpi": minimum - 0.01}))
    assert time.perf_counter() - start < 1.0
    assert f"latency on slowpi: budget {minimum - 0.01:.3f} ms" in str(info.value)
    assert f"smallest reachable {minimum:.3f} ms" in str(info.value)
    (binding,) = info.value.fields["minimums"]
    assert binding["device"] == "slowpi" and binding["minimum"] == minimum


def test_latency_range_spans_the_minimum_to_the_largest_subnet(searcher: SubnetSearch, tables) -> None:
    low, high = searcher.latency_range("slowpi")
    assert low == searcher.minimum(searcher.latency["slowpi"])
    space = searcher.genome.space
    assert high == max(tables[1].predict(space.max_arch(r)) for r in searcher.genome.resolutions)


def test_budget_just_above_the_minimum_does_not_hang(searcher: SubnetSearch, tables) -> None:
    minimum = searcher.minimum(searcher.latency["note10"])
    start = time.perf_counter()
    out = searcher.search(searcher.constraints({"note10": minimum * 1.002}), seed=0)
    assert time.perf_counter() - start < 30
    assert tables[0].predict(out.best.arch) <= minimum * 1.002


def test_tables_must_match_the_supernet_and_are_found_by_name(
    tmp_path: Path, tables, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ofa_edge.supernet.spec import MBv3Spec

    with pytest.raises(
        LutError, match="is for 'ofa_mbv3_d234_e346_k357_w1.2', not 'ofa_mbv3_d234_e346_k357_w1.0'"
    ):
        SubnetSearch("ofa_mbv3_d234_e346_k357_w1.0", MBv3Spec(), {"note10": tables[0]}, objective="macs")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LutError, match=f"measure one: ofa-edge lut build note10 --supernet {W12}"):
        find_table("note10", W12, folders=[tmp_path])
    tables[0].save(tmp_path / f"note10_{W12}_fp32_t4.json")
    assert find_table("note10", W12, folders=[tmp_path]) == tmp_path / f"note10_{W12}_fp32_t4.json"
    assert find_table("note10", W12, threads=4, folders=[tmp_path]).name.endswith("_t4.json")
    with pytest.raises(LutError):
        find_table("note10", W12, threads=2, folders=[tmp_path])


def test_cli_search_json_pareto_and_errors(
    tmp_path: Path, tables, predictor: AccuracyPredictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    note10, slow = tables
    note10.save(tmp_path / "note10.json")
    slow.save(tmp_path / "slowpi.json")
    save_predictor(predictor, tmp_path / "pred.pt", W12)
    base = ["search", "--supernet", W12, "--predictor", str(tmp_path / "pred.pt"), "--generations", "60"]
    devices = ["--device", "note10", "--lut", str(tmp_path / "note10.json")]
    devices += ["--device", "slowpi", "--lut", str(tmp_path / "slowpi.json")]
    res = run(
        "--json",
        *base,
        *devices,
        "--latency-ms",
        "20",
        "--latency-ms",
        "38",
        "--macs",
        "250",
        "--top",
        "2",
        "--out",
        str(tmp_path / "arch.json"),
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "ofa-edge/search/1" and len(doc["results"]) == 2
    best = doc["results"][0]
    assert set(best["latency_ms"]) == {"note10", "slowpi"}
    arch = ArchConfig.load(tmp_path / "arch.json")
    assert arch.to_dict() == best["arch"]
    assert note10.predict(arch) == best["latency_ms"]["note10"] <= 20
    assert slow.predict(arch) == best["latency_ms"]["slowpi"] <= 38
    assert best["macs"] == count(note10.spec, arch).macs <= 250e6
    again = json.loads(
        run(
            "--json",
            *base,
            *devices,
            "--latency-ms",
            "20",
            "--latency-ms",
            "38",
            "--macs",
            "250",
            "--top",
            "2",
        ).stdout
    )
    assert again["results"] == doc["results"]  # same seed, same answer

    res = run(
        "--json", *base, *devices[:4], "--pareto", "5,14,20", "--pareto-out", str(tmp_path / "sweep" / "p")
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [p["feasible"] for p in doc["points"]] == [False, True, True]
    assert doc["points"][0]["minimums"][0]["minimum"] > 5
    scores = [p["result"]["score"] for p in doc["points"][1:]]
    assert scores[1] >= scores[0]
    rows = json.loads((tmp_path / "sweep" / "p.json").read_text())["rows"]
    assert len(rows) == 3 and (tmp_path / "sweep" / "p.csv").read_text().count("\n") == 4
    assert (tmp_path / "sweep" / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    res = run(*base, *devices[:4], "--latency-ms", "3")
    assert "below the smallest reachable" in error_line(res, 9)
    res = run("search", "--supernet", W12, "--device", "nowhere", "--latency-ms", "3", cwd=tmp_path)
    assert f"ofa-edge lut build nowhere --supernet {W12}" in error_line(res, 6)
    # Without --predictor, MIT's predictor of w1.2 is fetched (tests/test_mit_predictor.py); offline:
    monkeypatch.setenv("OFA_EDGE_MIRROR", f"http://127.0.0.1:{_closed_port()}")
    res = run("search", "--supernet", W12, *devices[:4], "--latency-ms", "20", cwd=tmp_path)
    assert "acc_predictor.pth" in error_line(res, 7) and "--predictor PATH" in res.stderr
    res = run(
        "--json",
        "search",
        "--supernet",
        W12,
        *devices[:4],
        "--latency-ms",
        "20",
        "--objective",
        "macs",
        "--generations",
        "60",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["results"][0]["macs"] > 150e6


def test_objective_macs(searcher: SubnetSearch, tables) -> None:
    # The device a table is used for is the caller's name for it, not the one in the table.
    s = SubnetSearch(W12, tables[0].spec, {"pi-7": tables[0]}, objective="macs", generations=GENERATIONS)
    cons = s.constraints({"pi-7": 20.0})
    out = s.search(cons, seed=0)
    assert out.best.score == out.best.costs[CostKey("macs")]
    assert out.best.costs[CostKey("latency", "pi-7")] == tables[0].predict(out.best.arch) <= 20.0
    assert out.best.to_dict()["costs"]["latency on pi-7"] == out.best.costs[CostKey("latency", "pi-7")]
    _, random_macs = s.random_feasible(cons, 300, seed=0)
    assert out.best.score >= random_macs.max()
    assert cons[0].describe() == {"metric": "latency", "device": "pi-7", "unit": "ms", "budget": 20.0}
    assert tables[0].device.name == "note10"


def test_pareto_front_never_drops_where_a_looser_search_stalls(tables, predictor: AccuracyPredictor) -> None:
    short = SubnetSearch(W12, tables[0].spec, by_name(tables), predictor, generations=1)
    budgets = [30, 14, 22, 18, 26]
    alone = {b: short.search(short.constraints({"note10": b}), seed=5).best.score for b in budgets}
    assert any(alone[b] < max(alone[c] for c in budgets if c < b) for b in budgets), "a search stalls"
    points = short.pareto("note10", budgets, seed=5)
    assert [p.budget_ms for p in points] == budgets
    for p in points:
        assert p.outcome.best.costs[CostKey("latency", "note10")] <= p.budget_ms
        assert p.outcome.best.score == max(alone[c] for c in budgets if c <= p.budget_ms)
