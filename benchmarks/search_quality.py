"""Does the search beat random sampling, and do the subnets it finds keep their budget when
measured on the device?

Optimizer half: the search's best predicted score vs the best of 1,000 random feasible subnets,
per latency budget, with the same table and predictor. Table: MIT's Note10 tables for the w1.2
space (imported). Predictor: a seeded random MLP of MIT's shape (the optimizer sees the
predictor as a black box).

On-device half (``--measure``): the device's own table is built and calibrated, the search runs
at 9 budgets across the reachable range with 3 seeds each, and every subnet found is exported and
measured whole on the device (reference-normalized, 3 rounds); ``--lut`` uses a table calibrated
before (such as a shipped one) instead. Target: measured <= budget x 1.05
in >= 95 % of cases. Without ``--predictor`` the objective is MACs, which pushes every subnet
against its latency budget (the hard case for this check; an accuracy predictor may stop short).

    python -m benchmarks.search_quality [--budgets 12,15,20,25,30] [--random 1000] [--seeds 0,1,2]
    python -m benchmarks.search_quality --measure [--device local|sshd] [--supernet ofa-mbv3-cifar10]
        [--lut latency_tables/testbed-local_ofa-mbv3-cifar10_fp32_t1.json | --passes N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks._devices import add_device_args, device_spec
from ofa_edge.accuracy.predictor import AccuracyPredictor, ArchEncoder
from ofa_edge.lut import import_ofa
from ofa_edge.lut.table import PASSES, SupernetRef
from ofa_edge.search import SubnetSearch
from ofa_edge.search.costs import CostKey

W12 = "ofa_mbv3_d234_e346_k357_w1.2"
NOTE10 = Path(__file__).resolve().parents[1] / "latency_tables" / "ofa_note10_lut_w1.2"


def optimizer_half(args: argparse.Namespace) -> None:
    """Search vs the best of ``--random`` random feasible subnets on the Note10 table."""
    table = import_ofa(NOTE10, SupernetRef.named(W12), device_name="note10")
    torch.manual_seed(0)
    predictor = AccuracyPredictor(ArchEncoder.for_space(table.spec.space, table.resolutions))
    predictor.base_acc.fill_(0.75)
    search = SubnetSearch(W12, table.spec, {"note10": table}, predictor)
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


def device_half(args: argparse.Namespace) -> None:
    """Subnets found at budgets across the device's reachable range, measured there whole."""
    from ofa_edge.accuracy.predictor import load_predictor
    from ofa_edge.devices.sessions import open_session
    from ofa_edge.lut.build import build_table
    from ofa_edge.lut.table import LatencyTable, describe_calibration
    from ofa_edge.lut.validate import measure_subnets, validate
    from ofa_edge.supernet.registry import get_supernet_info

    spec = get_supernet_info(args.supernet).build().spec
    resolutions = list(spec.space.resolutions)
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory(prefix="ofa-edge-quality-") as tmp, device_spec(args) as device:
        path = args.lut or Path(tmp) / "lut.json"
        with open_session(device) as session:
            if not args.lut:
                supernet = SupernetRef.named(args.supernet)
                build_table(session, supernet, resolutions, path, threads=args.threads, passes=args.passes)
                validate(session, path, samples=40, fit=20, rounds=3)
            table = LatencyTable.load(path)
            cal = table.calibration
            if table.device.name != device.name or not cal or not table.reference:
                raise SystemExit(f"{path}: not a calibrated table of {device.name}")
            timings = table.reference.timings_ms
            predictor = load_predictor(args.predictor, spec.space).predictor if args.predictor else None
            objective = "accuracy" if predictor else "macs"
            search = SubnetSearch(args.supernet, spec, {device.name: table}, predictor, objective=objective)
            low, high = search.latency_range(device.name)
            budgets = [low + (high - low) * q for q in np.linspace(0.1, 0.9, 9)]
            found = [
                (b, search.search(search.constraints({device.name: b}), seed=s).best)
                for b in budgets
                for s in seeds
            ]
            archs = list({c.arch.to_json(): c.arch for _, c in found}.values())
            measured = dict(
                zip((a.to_json() for a in archs), measure_subnets(session, table, archs, rounds=3))
            )
    print(f"device: {device.name} ({device.description}), supernet {args.supernet}, objective {objective}")
    print(
        f"table {'--lut ' + str(args.lut) if args.lut else 'built'}, calibrated on {cal.subnets} subnets: "
        f"{describe_calibration(cal)}; reachable {low:.3f}-{high:.3f} ms"
    )
    print(
        f"reference level {table.reference.median_ms:.4f} ms; {len(timings)} timings during the build "
        f"ranged {min(timings):.4f}-{max(timings):.4f} ms"
    )
    print(f"{'budget ms':>10s} {'seed':>4s} {'predicted':>10s} {'measured':>9s} {'/budget':>8s} {'ok':>3s}")
    ok = []
    for (budget, cand), seed in zip(found, seeds * len(budgets)):
        ms = measured[cand.arch.to_json()]
        ok.append(ms <= budget * args.tolerance)
        pred = cand.costs[CostKey("latency", device.name)]
        print(
            f"{budget:10.3f} {seed:4d} {pred:10.3f} {ms:9.3f} {ms / budget:8.3f} "
            f"{'yes' if ok[-1] else 'NO':>3s}"
        )
    print(
        f"measured within budget x {args.tolerance}: {sum(ok)}/{len(ok)} = {100 * np.mean(ok):.1f} % "
        f"({len(archs)} distinct subnets; target >= 95 %)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budgets", default="12,15,20,25,30", help="latency budgets (ms) on the Note10 table"
    )
    parser.add_argument("--random", type=int, default=1000, help="random feasible subnets per budget")
    parser.add_argument("--seeds", default="0,1,2", help="search seeds (the worst one is reported)")
    parser.add_argument("--measure", action="store_true", help="the on-device half instead")
    add_device_args(parser)
    parser.add_argument("--supernet", default="ofa-mbv3-cifar10", help="for --measure")
    parser.add_argument("--predictor", help="for --measure: a predictor file (default: maximize MACs)")
    parser.add_argument(
        "--lut", type=Path, help="for --measure: the device's calibrated table (default: build one)"
    )
    parser.add_argument("--passes", type=int, default=PASSES, help="for --measure: the built table's passes")
    parser.add_argument("--tolerance", type=float, default=1.05)
    args = parser.parse_args()
    (device_half if args.measure else optimizer_half)(args)


if __name__ == "__main__":
    main()
