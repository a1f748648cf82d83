"""Which calibration form predicts the subnets a search picks, measured on the device.

Measures together, twice (``--rounds`` shuffled rounds each): the subnets ``lut validate`` fits
on (the smallest of every resolution, then random ones), ``--held-out`` more random ones, and the
subnets an accuracy-maximizing search picks at ``--budgets`` budgets across the table's
reachable range (seeds 0 and 1). Then fits each form of the calibration (``a*sum + b``, with the
op count ``c*n_ops``, with the curvature ``q*sum**2``, with both, and the leave-one-out choice
``lut validate`` makes among them) on one measurement of the fit subnets and scores it against
the other (both ways, averaged): MAPE on the held-out random subnets and on the picks, the
picks' bias, and the share of picks measured more than 5 % above their prediction (a search
keeps a pick's prediction within its budget, so that share bounds how often a pick misses
budget x 1.05).

    python -m benchmarks.calibration_forms --device local|sshd --lut TABLE.json [--save RAW.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks._devices import add_device_args, device_spec
from ofa_edge.accuracy.predictor import predictor_for
from ofa_edge.devices.sessions import open_session
from ofa_edge.lut.table import LatencyTable, apply_calibration
from ofa_edge.lut.validate import (
    TERMS,
    calibration_archs,
    calibration_bounds,
    fit_calibration,
    measure_subnets,
)
from ofa_edge.search import SubnetSearch
from ofa_edge.supernet.space import ArchConfig

TERM_NAMES = {"q": "q*sum^2", "c": "c*n_ops"}


def form_name(terms: tuple[str, ...]) -> str:
    """The calibration form with ``terms`` written out, as printed in the table."""
    return "a*sum + " + "".join(f"{TERM_NAMES[t]} + " for t in terms) + "b"


def picks(table: LatencyTable, n_budgets: int) -> list[ArchConfig]:
    """The accuracy search's subnets at ``n_budgets`` budgets across the reachable range, 2 seeds."""
    spec, name = table.spec, table.device.name
    predictor = predictor_for(table.supernet.id, spec.space)
    search = SubnetSearch(table.supernet.id, spec, {name: table}, predictor, objective="accuracy")
    low, high = search.latency_range(name)
    found = [
        search.search(search.constraints({name: low + (high - low) * q}), seed=s).best.arch
        for q in np.linspace(0.05, 0.95, n_budgets)
        for s in (0, 1)
    ]
    return list({a.to_json(): a for a in found}.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_device_args(parser)
    parser.add_argument("--lut", type=Path, required=True, help="the device's table (its entries are used)")
    parser.add_argument("--fit", type=int, default=20)
    parser.add_argument("--held-out", type=int, default=40)
    parser.add_argument("--budgets", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--save", type=Path, help="keep the raw measurements here (JSON)")
    args = parser.parse_args()
    table = LatencyTable.load(args.lut)
    measured_by_validate = calibration_archs(table, args.fit + args.held_out, args.fit, seed=0)
    chosen = picks(table, args.budgets)
    archs = measured_by_validate + chosen
    groups = {"fit": slice(0, args.fit), "held": slice(args.fit, len(measured_by_validate))}
    groups["picks"] = slice(len(measured_by_validate), None)
    with device_spec(args) as device, open_session(device) as session:
        m = [measure_subnets(session, table, archs, rounds=args.rounds, seed=s) for s in (2, 3)]
    sums = np.array([table.op_sum(a) for a in archs])
    n_ops = np.array([table.op_count(a) for a in archs], float)
    bounds = calibration_bounds(table)
    if args.save:
        args.save.write_text(
            json.dumps(
                {
                    "device": table.device.name,
                    "groups": {k: [v.start, v.stop] for k, v in groups.items()},
                    "points": [
                        {
                            "arch": a.to_dict(),
                            "op_sum": float(s),
                            "n_ops": int(n),
                            "ms": [float(m[0][i]), float(m[1][i])],
                        }
                        for i, (a, s, n) in enumerate(zip(archs, sums, n_ops))
                    ],
                }
            )
        )
    fit, ho, pk = groups["fit"], groups["held"], groups["picks"]
    noise = [100 * np.mean(np.abs(m[0][g] - m[1][g]) / m[1][g]) for g in (ho, pk)]
    print(
        f"device {table.device.name}: {args.fit} fit, {args.held_out} held-out random, "
        f"{len(chosen)} picks, each measured twice ({args.rounds} rounds); between the two: "
        f"held-out {noise[0]:.2f} %, picks {noise[1]:.2f} % MAPE"
    )
    print(
        f"{'form':>30s} {'held MAPE':>10s} {'picks MAPE':>11s} {'picks bias':>11s} "
        f"{'picks >5 % above':>17s}  terms kept"
    )
    for label, forms in [*((form_name(t), (t,)) for t in TERMS), ("LOO choice", TERMS)]:
        scores, kept = [], []
        for one, other in ((m[0], m[1]), (m[1], m[0])):
            cal, _ = fit_calibration(sums[fit], n_ops[fit], one[fit], bounds, forms)
            pred = apply_calibration(cal, sums, n_ops)
            err = (pred - other) / other
            scores.append(
                [
                    np.mean(np.abs(err[ho])),
                    np.mean(np.abs(err[pk])),
                    np.mean(err[pk]),
                    np.mean(other[pk] > 1.05 * pred[pk]),
                ]
            )
            kept.append("+".join(t for t in ("c", "q") if cal.terms[t]) or ("line" if cal.b else "scale"))
        s = 100 * np.mean(scores, axis=0)
        print(f"{label:>30s} {s[0]:9.2f}% {s[1]:10.2f}% {s[2]:+10.2f}% {s[3]:16.1f}%  {', '.join(kept)}")


if __name__ == "__main__":
    main()
