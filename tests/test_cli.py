"""The ofa-edge command as users run it: real subprocesses, parsed --json, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


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


def test_count_matches_published_figures() -> None:
    res = run("--json", "count", "--supernet", "ofa_mbv3_d234_e346_k357_w1.0", "--max", "--r", "224")
    assert res.returncode == 0, res.stderr
    assert round(json.loads(res.stdout)["macs"] / 1e6, 1) == 566.2


def test_random_subnet_is_drawn_from_its_seed() -> None:
    archs = [json.loads(run("--json", "count", "--random", seed).stdout)["arch"] for seed in ("3", "3", "4")]
    assert archs[0] == archs[1] != archs[2]
    res = run("count")
    assert res.returncode == 1 and "count: name a subnet" in res.stderr and "--random SEED" in res.stderr
    res = run("count", "--max", "--random", "1")
    assert res.returncode == 2 and "not allowed with" in res.stderr


@pytest.mark.parametrize(
    ("arch", "needle"),
    [
        ({"ks": [3] * 20, "e": [3] * 20, "d": [2, 2, 5, 2, 2], "r": 160}, "d[2]=5 is not in [2, 3, 4]"),
        ({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 161}, "r=161 is not a resolution"),
        ("{oops", "not valid JSON"),
    ],
)
def test_bad_arch_is_one_line(tmp_path: Path, arch: object, needle: str) -> None:
    path = tmp_path / "arch.json"
    path.write_text(arch if isinstance(arch, str) else json.dumps(arch))
    res = run("count", "--supernet", "ofa_mbv3_d234_e346_k357_w1.0", "--arch", str(path))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr


def test_demo_specializes_for_this_machine_offline(tmp_path: Path) -> None:
    """The README's main command: ``specialize`` on ``local`` with the shipped supernet and
    predictor (one resolution here, to keep the suite short)."""
    res = run("--json", "demo", "--resolutions", "24", cwd=tmp_path)  # no inventory there: local only
    out = (tmp_path / "ofa-edge-demo").resolve()
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["device"] == "local" and doc["supernet"] == "ofa-mbv3-cifar10"
    low, high = doc["search"]["reachable_ms"]
    assert low < doc["search"]["budget_ms"] < high and doc["search"]["arch"]["r"] == 24
    assert 0.1 < doc["search"]["predicted_top1"] < 1  # the shipped predictor, a fraction
    deployed = Path(doc["deployment"]["file"]["local"]).resolve()
    assert deployed.is_file() and deployed.parent == out and doc["deployment"]["measured_ms"] > 0
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
        "--device",
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
    assert res.returncode == 1 and "no entry for Conv-input:128x128x3" in res.stderr
