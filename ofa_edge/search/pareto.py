"""A latency sweep's outputs: ``<prefix>.csv``, ``<prefix>.json`` and a Pareto plot ``<prefix>.png``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ofa_edge.files import atomic_path, save_figure, write_json
from ofa_edge.search.costs import CostKey
from ofa_edge.search.searcher import ParetoPoint


def pareto_rows(points: list[ParetoPoint], device: str) -> list[dict[str, Any]]:
    """One flat row per budget: the best subnet's score and costs, or the reachable minimum."""
    rows = []
    for p in points:
        row: dict[str, Any] = {"budget_ms": p.budget_ms, "device": device}
        if p.outcome is not None:
            best = p.outcome.best
            row.update(
                feasible=True, score=best.score, **best.labelled_costs(), arch=json.dumps(best.arch.to_dict())
            )
        else:
            assert p.infeasible is not None  # a point has an outcome or the reason it has none
            first = (p.infeasible.fields.get("minimums") or [{}])[0]
            row.update(
                feasible=False,
                minimum=first.get("minimum"),
                binding=first.get("metric"),
                message=str(p.infeasible),
            )
        rows.append(row)
    return rows


def write_pareto(points: list[ParetoPoint], device: str, prefix: Path, score_name: str) -> list[Path]:
    """Write the table (CSV and JSON) and the plot of score vs predicted latency on ``device``."""
    from matplotlib.figure import Figure

    rows = pareto_rows(points, device)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = [prefix.with_suffix(".csv"), prefix.with_suffix(".json"), prefix.with_suffix(".png")]
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k != "budget_ms", k == "arch", k))
    with atomic_path(paths[0]) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    write_json(paths[1], {"device": device, "score": score_name, "rows": rows})
    found = [r for r in rows if r["feasible"]]
    lat_key = CostKey("latency", device).label
    fig = Figure(figsize=(6, 4))  # no pyplot: no global backend or figure registry touched
    ax = fig.add_subplot()
    ax.plot([r[lat_key] for r in found], [r["score"] for r in found], "o-")
    budgets_at: dict[tuple[float, float], list[float]] = {}  # budgets that kept the same subnet
    for r in found:
        budgets_at.setdefault((r[lat_key], r["score"]), []).append(r["budget_ms"])
    for (lat, score), budgets in budgets_at.items():
        text = ", ".join(f"{b:.3g}" for b in budgets)
        ax.annotate(f"≤{text} ms", (lat, score), textcoords="offset points", xytext=(4, -10))
    ax.set_xlabel(f"predicted latency on {device} (ms)")
    ax.set_ylabel(f"predicted {score_name}")
    ax.set_title("best subnet per latency budget")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, paths[2])
    return paths
