"""Seconds per budget of ofa-edge's vectorized search vs MIT's ``EvolutionFinder``, side by side.

Both search the w1.2 space with the same table (MIT's Note10 tables, imported; our predictions
equal MIT's sums exactly), the same predictor weights (a seeded random MIT-shaped MLP, loaded
into MIT's ``AccuracyPredictor`` and ours) and OFA's settings: population 100, 500 generations,
25 parents, half mutations. MIT's efficiency predictor is its own ``Mbv3LatencyModel`` over
its own OFA-MBv3 network. Budgets must be reachable (MIT's finder loops forever otherwise).
torch runs on one thread in both (on a busy machine extra threads only slow MIT's predictor).

    python -m benchmarks.search_speed [--budgets 15,20,25] [--mit-budgets 20] [--generations 500]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ofa_edge.accuracy.predictor import AccuracyPredictor, ArchEncoder
from ofa_edge.lut import import_ofa
from ofa_edge.lut.table import SupernetRef
from ofa_edge.search import SubnetSearch
from ofa_edge.supernet.space import ArchConfig
from ofa_edge.testing.mit_reference import import_mit

ROOT = Path(__file__).resolve().parents[1]

W12 = "ofa_mbv3_d234_e346_k357_w1.2"
NOTE10 = ROOT / "latency_tables" / "ofa_note10_lut_w1.2"


def mit_finder(table_dir: Path, resolutions: list[int], state_dict: dict, generations: int):
    """MIT's EvolutionFinder over its Mbv3LatencyModel and AccuracyPredictor (our weights)."""
    nas = import_mit("ofa.nas.accuracy_predictor")
    eff = import_mit("ofa.nas.efficiency_predictor")
    search_mod = import_mit("ofa.nas.search_algorithm")
    mbv3 = import_mit("ofa.imagenet_classification.elastic_nn.networks.ofa_mbv3")
    net = mbv3.OFAMobileNetV3(
        n_classes=1000,
        dropout_rate=0,
        width_mult=1.2,
        ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )
    latency = object.__new__(eff.Mbv3LatencyModel)  # its __init__ downloads; fill the same fields
    latency.ofa_net = net
    latency.latency_tables = {}
    for r in resolutions:
        t = object.__new__(eff.MBv3LatencyTable)
        t.lut = yaml.load((table_dir / f"{r}_lookup_table.yaml").read_text(), Loader=yaml.CSafeLoader)
        latency.latency_tables[r] = t
    encoder = nas.MobileNetArchEncoder(
        image_size_list=resolutions, ks_list=[3, 5, 7], expand_list=[3, 4, 6], depth_list=[2, 3, 4], n_stage=5
    )
    predictor = nas.AccuracyPredictor(encoder, hidden_size=400, n_layers=3, device="cpu")
    predictor.load_state_dict(state_dict)
    return search_mod.EvolutionFinder(
        latency,
        predictor,
        population_size=100,
        max_time_budget=generations,
        parent_ratio=0.25,
        mutation_ratio=0.5,
    )


def timed(fn):
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="15,20,25", help="latency budgets (ms) for ofa-edge")
    parser.add_argument("--mit-budgets", default="20", help="the subset MIT's finder also runs (slow)")
    parser.add_argument("--generations", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    budgets = [float(b) for b in args.budgets.split(",")]
    mit_budgets = {float(b) for b in args.mit_budgets.split(",") if b}

    table = import_ofa(NOTE10, SupernetRef.named(W12), device_name="note10")
    torch.manual_seed(args.seed)
    ours_pred = AccuracyPredictor(ArchEncoder.for_space(table.spec.space, table.resolutions))
    ours_pred.base_acc.fill_(0.75)
    (search, setup_s, _) = timed(
        lambda: SubnetSearch(W12, table.spec, {"note10": table}, ours_pred, generations=args.generations)
    )
    finder = mit_finder(NOTE10, table.resolutions, ours_pred.state_dict(), args.generations)
    print(
        f"population 100, {args.generations} generations, 25 parents; ofa-edge setup {setup_s:.2f} s (once)"
    )
    print(
        f"{'budget':>8s} {'ours s':>8s} {'ours cpu':>9s} {'MIT s':>9s} {'MIT cpu':>9s} {'ratio':>7s} "
        f"{'ours acc':>9s} {'MIT acc':>9s}"
    )
    for budget in budgets:
        out, wall, cpu = timed(
            lambda b=budget: search.search(search.constraints({"note10": b}), seed=args.seed)
        )
        row = f"{budget:8g} {wall:8.2f} {cpu:9.2f}"
        if budget in mit_budgets:
            random.seed(args.seed)
            np.random.seed(args.seed)
            with contextlib.redirect_stdout(io.StringIO()):  # it prints every 100 generations
                (_, info), mwall, mcpu = timed(lambda b=budget: finder.run_evolution_search(b, verbose=False))
            mit_acc, mit_arch, mit_lat = info
            arch = ArchConfig.from_dict(mit_arch)
            assert table.predict(arch) == mit_lat <= budget  # same table, same answer
            row += f" {mwall:9.2f} {mcpu:9.2f} {mwall / wall:6.0f}x {out.best.score:9.4f} {mit_acc:9.4f}"
        else:
            row += f" {'-':>9s} {'-':>9s} {'-':>7s} {out.best.score:9.4f} {'-':>9s}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
