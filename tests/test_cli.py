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
    res = run("--json", "count", "--max", "--r", "224")
    assert res.returncode == 0, res.stderr
    assert round(json.loads(res.stdout)["macs"] / 1e6, 1) == 566.2


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
    res = run("count", "--arch", str(path))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr


def test_demo_runs_offline(tmp_path: Path) -> None:
    res = run("--json", "demo", "--subnets", "1", "--out", str(tmp_path / "demo"))
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["rows"]
    assert [r["name"] for r in rows] == ["min", "max", "random0"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["min"]["macs"] < by_name["random0"]["macs"] < by_name["max"]["macs"]
    assert by_name["min"]["median_ms"] < by_name["max"]["median_ms"]
    for r in rows:
        assert Path(r["onnx"]).is_file() and r["max_abs_diff"] < 1e-4


def test_lut_import_and_predict(tmp_path: Path) -> None:
    from ofa_edge.supernet import SearchSpace
    from tests.conftest import SHARED

    lut = tmp_path / "note10.json"
    res = run(
        "lut",
        "import-ofa",
        str(SHARED / "data/ofa_note10_lut_w1.2"),
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
