"""The ofa-edge command as users run it: real subprocesses, parsed --json, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ofa_edge.cli.common import DEFAULT_SUPERNET

#: The line under every error (without OFA_EDGE_DEBUG): how to see its traceback.
DEBUG_HINT = "ofa-edge: OFA_EDGE_DEBUG=1 shows the traceback"


def error_line(res: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """The one line a failed command printed, checked: its exit code, no traceback, and the
    debug hint as the last line of stderr."""
    assert res.returncode == exit_code, res.stderr
    *lines, hint = res.stderr.strip().splitlines()
    assert hint == DEBUG_HINT and "Traceback" not in res.stderr, res.stderr
    (line,) = lines
    return line


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ofa_edge.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_supernets_json() -> None:
    res = run("supernets", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "ofa-edge/supernets/1"
    assert "ofa_mbv3_d234_e346_k357_w1.2" in [s["name"] for s in doc["supernets"]]
    assert "ofa_resnet50" in [s["name"] for s in doc["supernets"]]  # every family's entries


def test_count_matches_published_figures() -> None:
    res = run("--json", "count", "--supernet", "ofa_mbv3_d234_e346_k357_w1.0", "--max", "--r", "224")
    assert res.returncode == 0, res.stderr
    assert round(json.loads(res.stdout)["macs"] / 1e6, 1) == 566.2


def test_random_subnet_is_drawn_from_its_seed() -> None:
    archs = [json.loads(run("--json", "count", "--random", seed).stdout)["arch"] for seed in ("3", "3", "4")]
    assert archs[0] == archs[1] != archs[2]
    line = error_line(run("count"), 2)
    assert "count: name a subnet" in line and "--random SEED" in line
    res = run("count", "--max", "--random", "1")
    assert res.returncode == 2 and "not allowed with" in res.stderr


MBV3_ARCH = {"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 160}
RESNET_ARCH = {"d": [0] * 5, "e": [0.25] * 18, "w": [1] * 6, "r": 160}


@pytest.mark.parametrize(
    ("supernet", "arch", "needle"),
    [
        ("ofa_mbv3_d234_e346_k357_w1.0", {**MBV3_ARCH, "d": [2, 2, 5, 2, 2]}, "d[2]=5 is not in [2, 3, 4]"),
        ("ofa_mbv3_d234_e346_k357_w1.0", {**MBV3_ARCH, "r": 161}, "r=161 is not a resolution"),
        ("ofa_mbv3_d234_e346_k357_w1.0", "{oops", "not valid JSON"),
        ("ofa_resnet50", {**RESNET_ARCH, "w": [1, 1, 3, 1, 1, 1]}, "arch.json: w[2]=3 is not in [0, 1, 2]"),
        ("ofa_resnet50", MBV3_ARCH, "unknown field(s) ['ks']; allowed: d, e, w, r (or image_size)"),
        ("ofa_resnet50", {"d": [0] * 5, "e": [0.25] * 18}, "missing field(s) ['w'] (an OFA-ResNet arch has"),
    ],
)
def test_bad_arch_is_one_line(tmp_path: Path, supernet: str, arch: object, needle: str) -> None:
    path = tmp_path / "arch.json"
    path.write_text(arch if isinstance(arch, str) else json.dumps(arch))
    res = run("count", "--supernet", supernet, "--arch", str(path))
    assert needle in error_line(res, 2)


def test_demo_specializes_for_this_machine_offline(tmp_path: Path) -> None:
    """The README's main command: ``specialize`` on ``local`` with the shipped supernet and
    predictor (one resolution and one pass here, to keep the suite short; no inventory there:
    only ``local``)."""
    res = run("--json", "demo", "--resolutions", "24", "--passes", "1", cwd=tmp_path)
    out = (tmp_path / "ofa-edge-demo").resolve()
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["device"] == "local" and doc["supernet"] == DEFAULT_SUPERNET
    low, high = doc["search"]["reachable_ms"]
    assert low < doc["search"]["budget_ms"] < high and doc["search"]["arch"]["r"] == 24
    assert 0.1 < doc["search"]["predicted_top1"] < 1  # the shipped predictor, a fraction
    deployed = Path(doc["deployment"]["file"]["local"]).resolve()
    assert deployed.is_file() and deployed.parent == out and doc["deployment"]["measured_ms"] > 0
    agent_dir = doc["deployment"]["device"]["fingerprint"]["agent_dir"]
    assert agent_dir == os.environ["OFA_EDGE_AGENT_DIR"], "the test's agent folder (conftest), not the user's"
    assert (out / "pareto.png").is_file() and (tmp_path / doc["summary_file"]).is_file()  # relative to cwd


def test_lut_import_and_predict(tmp_path: Path) -> None:
    from ofa_edge.supernet import SearchSpace
    from tests.conftest import NOTE10

    lut = tmp_path / "note10.json"
    res = run(
        "lut",
        "import-ofa",
        str(NOTE10),
        "--supernet",
        "ofa_mbv3_d234_e346_k357_w1.2",
        "--device-name",
        "note10",
        "--out",
        str(lut),
    )
    assert res.returncode == 0, res.stderr
    arch = tmp_path / "arch.json"
    SearchSpace().min_arch(160).save(arch)
    res = run("--json", "lut", "predict", str(lut), "--arch", str(arch))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "ofa-edge/lut-predict/1" and 0 < doc["predicted_ms"] == doc["op_sum_ms"]
    SearchSpace().min_arch(128).save(arch)
    res = run("lut", "predict", str(lut), "--arch", str(arch))
    assert "no entry for Conv-input:128x128x3" in error_line(res, 6)
