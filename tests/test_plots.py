"""Plots are drawn on their own ``Figure``: library code never switches the caller's backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: Draws every plot ofa-edge writes while the caller has chosen the SVG backend.
SCRIPT = """
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("svg")
from ofa_edge.accuracy.predictor import FitResult, fit_plot
from ofa_edge.lut.validate import scatter_plot
from ofa_edge.search.pareto import write_pareto

out, a = Path(sys.argv[1]), np.array([1.0, 2.0, 3.5])
fit_plot(FitResult(None, 0.1, 1.0, 3, 3, (a, a)), "fit", out / "fit.png")
scatter_plot(a, a * 1.1, a, 1, "pi", out / "lut.png")
write_pareto([], "pi", out / "pareto", "accuracy")
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_plots_leave_the_backend_and_pyplot_alone(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["svg", "False"], "backend unchanged, pyplot never imported"
    for name in ("fit.png", "lut.png", "pareto.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name
