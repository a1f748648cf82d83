"""The training curve of a run: validation top-1 of the largest and smallest subnet after every
epoch against the training CPU-hours spent, one band per phase, written as ``curve.png`` in the
run folder so a long run can be judged at a glance (and extrapolated) while it trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ofa_edge.files import save_figure

#: The plot's file name in a run folder.
CURVE_FILE = "curve.png"


def plot_curve(log: list[dict[str, Any]], target: Path) -> None:
    """Plot ``log`` (``RunState.log``: one entry per finished epoch) into ``target``."""
    from matplotlib.figure import Figure

    hours = [e["train_cpu_seconds"] / 3600 for e in log]
    fig = Figure(figsize=(7, 4))  # no pyplot: no global backend or figure registry touched
    ax = fig.add_subplot()
    ax.plot(hours, [e["val_top1_max"] for e in log], ".-", label="largest subnet")
    ax.plot(hours, [e["val_top1_min"] for e in log], ".-", label="smallest subnet (of the phase's space)")
    start, shade = 0.0, False
    for i, entry in enumerate(log):  # a band (every other one shaded) and a label per phase
        if i + 1 == len(log) or log[i + 1]["phase"] != entry["phase"]:
            ax.axvspan(start, hours[i], alpha=0.1 if shade else 0.0, color="grey")
            ax.text(start, 2, f" {entry['phase']}", rotation=90, ha="left", va="bottom", fontsize=7)
            start, shade = hours[i], not shade
    ax.set_xlabel("training CPU-hours")
    ax.set_ylabel("val top-1 (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, target)
