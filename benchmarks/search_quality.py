"""Does the search beat random sampling? Its best predicted score vs the best of 1,000 random
feasible subnets, per latency budget, with the same table and predictor.

Table: MIT's Note10 tables for the w1.2 space (imported). Predictor: a seeded random MLP of
MIT's shape (the trained ``ofa-mbv3-cifar10`` predictor comes later; the comparison is about
the optimizer, which sees the predictor as a black box). The on-device half (the found subnet
measured on the device within budget x 1.05) is :func:`measured_within_budget`, to be run once
a device has a table of its own.

    python benchmarks/search_quality.py [--budgets 12,15,20,25,30] [--random 1000] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ofa_edge.accuracy.predictor import AccuracyPredictor, ArchEncoder
from ofa_edge.lut import import_ofa
from ofa_edge.search import SubnetSearch
from ofa_edge.supernet.registry import describe_supernet
from ofa_edge.supernet.space import ArchConfig

W12 = "ofa_mbv3_d234_e346_k357_w1.2"
NOTE10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "ofa_note10_lut_w1.2"


def measured_within_budget(
    device: str,
    supernet: str,
    arch: ArchConfig,
    budget_ms: float,
    *,
    tolerance: float = 1.05,
    inventory: str | None = None,
) -> tuple[float, bool]:
    """Export ``arch`` (random weights: latency does not depend on them), measure it on
    ``device`` through its agent, and say whether the median is within ``budget_ms * tolerance``."""
    import tempfile

    from ofa_edge.devices.agent import open_session
    from ofa_edge.devices.inventory import load_inventory
    from ofa_edge.export.onnx import export_onnx
    from ofa_edge.supernet.registry import get_supernet_info

    spec = load_inventory(inventory)[device]
    net = get_supernet_info(supernet).build().eval()
    net.set_arch(arch)
    with tempfile.TemporaryDirectory() as tmp, open_session(spec) as session:
        model = export_onnx(net.get_active_subnet(), arch.r, Path(tmp) / "subnet.onnx")
        (result,) = session.bench([model], runtime="onnxruntime", threads=spec.threads, min_runs=50).results
    return result.median_ms, result.median_ms <= budget_ms * tolerance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budgets", default="12,15,20,25,30", help="latency budgets (ms) on the Note10 table"
    )
    parser.add_argument("--random", type=int, default=1000, help="random feasible subnets per budget")
    parser.add_argument("--seeds", default="0,1,2", help="search seeds (the worst one is reported)")
    args = parser.parse_args()
    table = import_ofa(NOTE10, describe_supernet(W12), device_name="note10")
    torch.manual_seed(0)
    predictor = AccuracyPredictor(ArchEncoder.for_space(table.spec.space, table.resolutions))
    predictor.base_acc.fill_(0.75)
    search = SubnetSearch(W12, table.spec, [table], predictor)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        f"{'budget':>7s} {'search (worst seed)':>20s} {'best random':>12s} {'mean random':>12s} {'beats':>6s}"
    )
    for budget in (float(b) for b in args.budgets.split(",")):
        cons = search.constraints({"note10": budget})
        found = min(search.search(cons, seed=s).best.score for s in seeds)
        _, scores = search.random_feasible(cons, args.random, seed=0)
        print(
            f"{budget:7g} {found:20.4f} {scores.max():12.4f} {scores.mean():12.4f} "
            f"{'yes' if found >= scores.max() else 'NO':>6s}   ({len(scores)} random)",
            flush=True,
        )


if __name__ == "__main__":
    main()
