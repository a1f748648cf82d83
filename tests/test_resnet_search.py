"""The search over OFA-ResNets: vectorized costs equal the scalar references, exact minima, budgets.

Tables are synthetic: every distinct op of the spec with a made-up latency (from its MACs plus a
per-key deterministic jitter) and a made-up calibration, so no device is needed.
"""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from ofa_edge.accuracy.predictor import AccuracyPredictor
from ofa_edge.accuracy.resnet_predictor import ResNetArchEncoder
from ofa_edge.errors import ConfigError
from ofa_edge.lut.table import Calibration, DeviceRecord, Entry, LatencyTable, Runtime, SupernetRef
from ofa_edge.search import InfeasibleError, Population, SubnetSearch, peak_activation_bytes
from ofa_edge.search.costs import CostKey, CostModel
from ofa_edge.search.genomes import GENOMES
from ofa_edge.search.population import Genome
from ofa_edge.supernet.registry import get_supernet_info
from ofa_edge.supernet.resnet_spec import ResNetArch, ResNetSpace, ResNetSpec
from tests.test_cli import error_line, run
from tests.test_registry import _closed_port
from tests.test_search import W12

SPEC = ResNetSpec(10, ResNetSpace(resolutions=(32, 48)))
CALIBRATION = Calibration(a=1.1, b=0.8, c=-0.01, q=0.002)


def synthetic_table(spec: ResNetSpec, supernet: str, resolutions: tuple[int, ...]) -> LatencyTable:
    """Every distinct op of ``spec`` at ``resolutions`` with a made-up latency, calibrated."""
    entries = {
        r: {
            op.key: Entry(spec.op_counts(op).macs / 2e7 + (zlib.crc32(op.key.encode()) % 100) / 400 + 0.01)
            for op in spec.distinct_ops(r)
        }
        for r in resolutions
    }
    return LatencyTable(
        SupernetRef(supernet, spec),
        DeviceRecord("fake"),
        Runtime("synthetic"),
        entries=entries,
        calibration=CALIBRATION,
    )


@pytest.fixture(scope="module")
def table() -> LatencyTable:
    return synthetic_table(SPEC, "tiny-resnet", SPEC.space.resolutions)


@pytest.fixture(scope="module")
def predictor() -> AccuracyPredictor:
    torch.manual_seed(0)
    model = AccuracyPredictor(ResNetArchEncoder(SPEC.space, SPEC.space.resolutions), 64, 2)
    model.base_acc.fill_(0.7)
    return model


@pytest.fixture(scope="module")
def searcher(table: LatencyTable, predictor: AccuracyPredictor) -> SubnetSearch:
    return SubnetSearch("tiny-resnet", SPEC, {"fake": table}, predictor, generations=40)


def _random_archs(n: int, seed: int) -> list[ResNetArch]:
    rng = random.Random(seed)
    return [SPEC.space.sample(rng) for _ in range(n)]


def test_vectorized_costs_and_predictions_equal_the_scalar_references(
    searcher: SubnetSearch, table, predictor: AccuracyPredictor
) -> None:
    archs = _random_archs(300, seed=0)
    pop = Population.from_archs(archs, searcher.genome)
    assert [a.to_dict() for a in pop.archs(searcher.genome)] == [a.to_dict() for a in archs]
    active = searcher.genome.active(pop.d)
    counts = [SPEC.count(a) for a in archs]
    latency = [table.predict(a) for a in archs]
    expected = [
        (searcher.latency["fake"], latency),
        (searcher.macs, [c.macs for c in counts]),
        (searcher.params, [c.params for c in counts]),
        (searcher.file_size, [4 * c.params for c in counts]),
        (searcher.peak_memory, [peak_activation_bytes(SPEC, a) for a in archs]),
    ]
    for cost, values in expected:
        assert np.array_equal(cost.evaluate(pop, active), np.asarray(values)), cost.key  # bit-exact
    assert len(set(latency)) > 250  # the archs differ in latency
    scores = searcher.engine.objective(pop, active)
    assert np.std(scores) > 1e-3
    np.testing.assert_allclose(scores, predictor.predict(archs), rtol=0, atol=1e-6)


def _every_member(genome: Genome) -> Population:
    """Every gene combination at every resolution (a brute force over a tiny space)."""
    one = genome.combinations([(n, c) for n, k in genome.n_choices.items() for c in range(len(k))])
    every = [one.take(np.arange(len(one))) for _ in genome.resolutions]
    for r, part in enumerate(every):
        part.r[:] = r
    return Population.concat(every)


@pytest.mark.parametrize(
    "space",
    [
        ResNetSpace((0,), (0.2, 0.35), (0.65, 1.0), (32,)),  # every expand and width: 2^10 x 2^6
        ResNetSpace((0, 1, 2), (0.25,), (0.65, 1.0), (32, 48)),  # every depth and width
    ],
)
def test_minimum_equals_a_brute_force_over_a_tiny_space(space: ResNetSpace) -> None:
    spec = ResNetSpec(10, space)
    search = SubnetSearch(
        "tiny", spec, {"fake": synthetic_table(spec, "tiny", space.resolutions)}, objective="macs"
    )
    everyone = _every_member(search.genome)
    active = search.genome.active(everyone.d)
    costs: list[CostModel] = [search.latency["fake"], search.peak_memory]
    for cost in costs:
        minimum, arg = cost.minimum(search.genome)
        assert minimum == cost.evaluate(everyone, active).min(), cost.key
        assert cost.evaluate(arg, search.genome.active(arg.d))[0] == minimum


def test_infeasible_budget_gives_the_exact_minimum(searcher: SubnetSearch, table) -> None:
    minimum, arg = searcher.latency["fake"].minimum(searcher.genome)
    (arch,) = arg.archs(searcher.genome)
    assert table.predict(arch) == minimum
    assert min(table.predict(a) for a in _random_archs(2000, seed=5)) > minimum
    with pytest.raises(InfeasibleError) as info:
        searcher.search(searcher.constraints({"fake": minimum - 0.01}))
    (binding,) = info.value.fields["minimums"]
    assert binding["minimum"] == minimum and binding["arch"] == arch.to_dict()


@pytest.mark.parametrize("objective", ["accuracy", "macs"])
def test_found_subnets_meet_the_budgets_and_beat_random_ones(
    searcher: SubnetSearch, table, objective: str
) -> None:
    search = (
        searcher
        if objective == "accuracy"
        else SubnetSearch("tiny-resnet", SPEC, {"fake": table}, objective="macs", generations=40)
    )
    low, high = search.latency_range("fake")
    budget = low + (high - low) / 3
    largest = search.genome.largest()
    peak = 0.8 * float(search.peak_memory.evaluate(largest, search.genome.active(largest.d)).min())
    cons = search.constraints({"fake": budget}, peak_bytes=peak)
    out = search.search(cons, seed=0, top=3)
    assert len({json.dumps(c.arch.to_dict()) for c in out.candidates}) == len(out.candidates) > 1
    for cand in out.candidates:
        assert cand.costs[CostKey("latency", "fake")] == table.predict(cand.arch) <= budget
        assert cand.costs[CostKey("macs")] == SPEC.count(cand.arch).macs
        assert cand.costs[CostKey("peak_memory")] == peak_activation_bytes(SPEC, cand.arch) <= cons[1].budget
    _, random_scores = search.random_feasible(cons, 200, seed=1)
    assert len(random_scores) == 200 and out.best.score >= random_scores.max()


def test_a_family_without_a_genome_is_refused_in_one_line(table, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(GENOMES, "ofa_resnet")
    with pytest.raises(ConfigError, match="tiny-resnet: the search does not cover ofa_resnet supernets"):
        SubnetSearch("tiny-resnet", SPEC, {"fake": table}, objective="macs")


def test_a_predictor_of_another_space_or_family_is_refused_in_one_line(table) -> None:
    other = AccuracyPredictor(ResNetArchEncoder(ResNetSpace(expand_ratio_list=(0.25,)), (32, 48)), 8, 1)
    with pytest.raises(ConfigError, match="the predictor does not encode this OFA-ResNet's space"):
        SubnetSearch("tiny-resnet", SPEC, {"fake": table}, other)
    resnets = AccuracyPredictor(ResNetArchEncoder(SPEC.space, (160,)), 8, 1)
    with pytest.raises(ConfigError, match=r"the predictor encodes kernels \[\] and expands \[\]"):
        SubnetSearch(W12, get_supernet_info(W12).spec, predictor=resnets)


def test_cli_searches_ofa_resnet50_by_macs_and_with_a_predictor_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = get_supernet_info("ofa_resnet50").spec
    table = synthetic_table(spec, "ofa_resnet50", (128,))
    table.save(tmp_path / "fake.json")
    budget = table.predict(spec.space.max_arch(128)) / 2  # binding: the largest subnet misses it
    torch.manual_seed(1)
    predictor = AccuracyPredictor(ResNetArchEncoder(spec.space))
    predictor.base_acc.fill_(0.78)
    torch.save(predictor.state_dict(), tmp_path / "mit.pth")  # MIT's file: the bare state dict
    base = ["search", "--supernet", "ofa_resnet50", "--device", "fake", "--lut", str(tmp_path / "fake.json")]
    base += ["--latency-ms", str(budget), "--generations", "20"]
    for extra in (
        ["--objective", "macs"],
        ["--predictor", str(tmp_path / "mit.pth"), "--out", str(tmp_path / "a.json")],
    ):
        res = run("--json", *base, *extra)
        assert res.returncode == 0, res.stderr
        best = json.loads(res.stdout)["results"][0]
        arch = ResNetArch.from_dict(best["arch"])
        assert best["latency_ms"]["fake"] == table.predict(arch) <= budget
        assert best["macs"] == spec.count(arch).macs
    assert json.loads((tmp_path / "a.json").read_text()) == best["arch"]
    assert 0.5 < best["score"] < 1.0
    # Without --predictor, MIT's predictor is fetched by name (tests/test_resnet_registry.py); offline:
    monkeypatch.setenv("OFA_EDGE_MIRROR", f"http://127.0.0.1:{_closed_port()}")
    res = run(*base, cwd=tmp_path)
    assert "ofa_resnet50_acc_predictor.pth" in error_line(res, 7) and "--predictor PATH" in res.stderr
