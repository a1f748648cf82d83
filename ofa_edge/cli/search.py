"""``ofa-edge search``: the best subnet under latency (per device), MACs, params and memory budgets."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ofa_edge.cli.common import add_command, add_device_threads, add_objective, add_precision, add_supernet
from ofa_edge.cli.output import Output
from ofa_edge.errors import ConfigError


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--pareto {text!r}: expected latency budgets in ms, e.g. 5,10,15,20") from None


def _predictor(args: argparse.Namespace, space: Any) -> Any:
    """The --predictor file, else the one shipped for the supernet; None for --objective macs."""
    from ofa_edge.accuracy.predictor import predictor_for

    if args.objective == "macs":
        return None
    return predictor_for(args.supernet, space, Path(args.predictor) if args.predictor else None)


def _tables(args: argparse.Namespace, spec: Any) -> tuple[dict[str, Path], dict[str, Any]]:
    """Each device's table and where it was found, by device name (--lut in order, else the
    table store): the --device names, else (--lut alone) the names the tables record."""
    from ofa_edge.lut.store import find_table, load_table_for

    devices, luts = args.device or [], args.lut or []
    if luts and devices and len(luts) != len(devices):
        raise ConfigError(
            f"{len(luts)} --lut for {len(devices)} --device", hint="give one --lut per --device, in order"
        )
    paths = [Path(p) for p in luts] or [
        find_table(d, args.supernet, precision=args.precision, threads=args.threads) for d in devices
    ]
    tables = [load_table_for(p, args.supernet, spec) for p in paths]
    names = devices or [t.device.name for t in tables]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"two latency tables for the same device name: {names}", hint="name each device once"
        )
    return dict(zip(names, paths)), dict(zip(names, tables))


def _result(c: Any) -> dict[str, Any]:
    """A candidate as JSON: arch, score and costs under stable keys."""
    from ofa_edge.search.costs import CostKey

    costs = c.costs
    return {
        "arch": c.arch.to_dict(),
        "score": c.score,
        "latency_ms": {k.device: v for k, v in costs.items() if k.metric == "latency"},
        "energy_mj": {k.device: v for k, v in costs.items() if k.metric == "energy"},
        "macs": int(costs[CostKey("macs")]),
        "params": int(costs[CostKey("params")]),
        "file_bytes": int(costs[CostKey("file_size")]),
        "peak_activation_bytes": int(costs[CostKey("peak_memory")]),
    }


def _line(rank: int, c: Any, score_name: str) -> str:
    r = _result(c)
    lat = "  ".join(
        [f"{d} {v:.2f} ms" for d, v in r["latency_ms"].items()]
        + [f"{d} {v:.3f} mJ" for d, v in r["energy_mj"].items()]
    )
    a = c.arch
    return (
        f"#{rank} predicted {score_name} {c.score:.4g}  r={a.r}  {lat}  MACs {r['macs'] / 1e6:.1f}M  "
        f"params {r['params'] / 1e6:.2f}M  file {r['file_bytes'] / 1e6:.1f} MB  "
        f"peak act. {r['peak_activation_bytes'] / 1e6:.2f} MB\n"
        "   " + " ".join(f"{k}={v}" for k, v in a.to_dict().items() if k != "r")
    )


def _point(p: Any) -> dict[str, Any]:
    """A Pareto point as JSON: its best subnet, or why its budget is unreachable."""
    doc = {"budget_ms": p.budget_ms, "feasible": p.outcome is not None}
    if p.outcome is not None:
        return doc | {"result": _result(p.outcome.best), "seconds": p.outcome.seconds}
    return doc | {"error": p.infeasible.message, "minimums": p.infeasible.fields["minimums"]}


def _cmd_search(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.search import SubnetSearch
    from ofa_edge.search.pareto import write_pareto
    from ofa_edge.supernet.registry import get_supernet_info

    spec = get_supernet_info(args.supernet).spec
    found, tables = _tables(args, spec)
    names = list(tables)
    used = {name: str(path) for name, path in found.items()}
    latency = args.latency_ms or []
    energy = args.energy_mj or []
    sweep = _floats(args.pareto) if args.pareto else None
    expected = len(names) - (1 if sweep else 0)
    if len(latency) != expected and (latency or sweep or not energy):  # energy budgets alone will do
        raise ConfigError(
            f"{len(latency)} --latency-ms for {len(names)} device(s)"
            + (" (--pareto gives the first device's budgets)" if sweep else ""),
            hint="give one --latency-ms per --device, in order",
        )
    if energy and len(energy) != len(names):
        raise ConfigError(
            f"{len(energy)} --energy-mj for {len(names)} device(s)",
            hint="give one --energy-mj per --device, in order",
        )
    if sweep and not names:
        raise ConfigError("--pareto sweeps a device's latency budget", hint="name the device with --device")
    search = SubnetSearch(
        args.supernet,
        spec,
        tables,
        _predictor(args, spec.space),
        objective=args.objective,
        generations=args.generations,
    )
    score_name = "accuracy" if args.objective == "accuracy" else "MACs"
    million = 1e6
    others = search.constraints(
        dict(zip(names[1:] if sweep else names, latency)),
        macs=args.macs * million if args.macs is not None else None,
        params=args.params * million if args.params is not None else None,
        file_bytes=args.file_mb * million if args.file_mb is not None else None,
        peak_bytes=args.peak_mb * million if args.peak_mb is not None else None,
        energy_mj=dict(zip(names, energy)),
    )
    if sweep:
        points = search.pareto(names[0], sweep, others, seed=args.seed)
        paths = write_pareto(points, names[0], Path(args.pareto_out), score_name)
        lines = [
            f"≤{p.budget_ms:g} ms: "
            + (_line(1, p.outcome.best, score_name) if p.outcome else str(p.infeasible))
            for p in points
        ]
        out.result(
            "search-pareto",
            {
                "supernet": args.supernet,
                "device": names[0],
                "tables": used,
                "seed": args.seed,
                "objective": args.objective,
                "constraints": [c.describe() for c in others],
                "points": [_point(p) for p in points],
                "files": [str(p) for p in paths],
            },
            "\n".join(lines) + "\nwritten: " + ", ".join(str(p) for p in paths),
        )
        return 0
    if not others:
        raise ConfigError(
            "no budget given",
            hint="pass --device NAME --latency-ms X or --energy-mj E, --macs M or --params P",
        )
    outcome = search.search(others, seed=args.seed, top=args.top)
    if args.out:
        outcome.best.arch.save(args.out)
    from ofa_edge.search.evolution import format_value

    budgets = ", ".join(f"{c.cost.key.label} ≤ {format_value(c.budget, c.cost.unit)}" for c in others)
    text = [
        f"{args.supernet}: {budgets} "
        f"(seed {args.seed}, {outcome.generations} generations, {outcome.seconds:.2f} s)"
    ]
    text += [_line(i + 1, c, score_name) for i, c in enumerate(outcome.candidates)]
    if args.out:
        text.append(f"arch written to {args.out}")
    out.result(
        "search",
        {
            "supernet": args.supernet,
            "tables": used,
            "seed": args.seed,
            "objective": args.objective,
            "constraints": [c.describe() for c in others],
            "seconds": outcome.seconds,
            "results": [_result(c) for c in outcome.candidates],
            "out": args.out,
        },
        "\n".join(text),
    )
    return 0


def register(sub: Any) -> None:
    """Add ``ofa-edge search``."""
    p = add_command(sub, "search", "best predicted subnet under per-device latency and size budgets")
    add_supernet(p)
    p.add_argument(
        "--device", action="append", metavar="NAME", help="device whose latency table to use (repeatable)"
    )
    p.add_argument(
        "--latency-ms", action="append", type=float, help="latency budget of each --device, in order"
    )
    p.add_argument(
        "--energy-mj",
        action="append",
        type=float,
        help="energy budget per inference (mJ) of each --device, in order (its table built with power rails)",
    )
    p.add_argument(
        "--lut",
        action="append",
        metavar="PATH",
        help="latency table of each --device, in order (default: found by name on the table search path)",
    )
    add_precision(p, "precision of the default tables")
    add_device_threads(p, "device threads of the default tables (default: any one found)")
    p.add_argument("--macs", type=float, help="budget in millions of MACs")
    p.add_argument("--params", type=float, help="budget in millions of parameters")
    p.add_argument("--file-mb", type=float, help="fp32 model file budget (MB, 4 bytes per parameter)")
    p.add_argument("--peak-mb", type=float, help="peak activation memory budget (MB, fp32, batch 1)")
    p.add_argument("--predictor", help="accuracy predictor file (default: the one shipped for the supernet)")
    add_objective(p)
    p.add_argument("--top", type=int, default=1, help="print the K best distinct subnets")
    p.add_argument("--seed", type=int, default=0, help="seed of the evolutionary search")
    p.add_argument("--generations", type=int, default=500, help="generations of the evolutionary search")
    p.add_argument("--out", metavar="ARCH.json", help="write the best subnet's arch JSON here")
    p.add_argument("--pareto", help="latency budgets (ms) of the first device to sweep, e.g. 5,10,15,20")
    p.add_argument("--pareto-out", default="pareto", help="prefix of the sweep's .csv/.json/.png files")
    p.set_defaults(func=_cmd_search)
