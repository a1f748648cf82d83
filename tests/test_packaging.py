"""What a user gets from ``pip install .``: every package, the weights and the shipped tables,
found by the installed package itself (not through this repository's folders)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_every_package_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in [*(ROOT / "ofa_edge").rglob("__init__.py"), ROOT / "device_agents" / "__init__.py"]
    }
    assert on_disk - {"ofa_edge"} <= listed and "ofa_edge" in listed, sorted(on_disk - listed)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ofa-edge installed from a wheel built from this checkout (not editable);
    its dependencies come from the test venv's site-packages through a plain path entry, so no
    editable finder of the test venv can hand out the checkout's files instead."""
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip"]
    run = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)  # noqa: E731
    # Built from a copy: a build/ folder left in the checkout could carry files that no longer exist.
    skip = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache")
    source = shutil.copytree(ROOT, tmp / "source", ignore=skip)
    run(*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", str(source), "-w", str(tmp))
    (wheel,) = tmp.glob("ofa_edge-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    (Path(site) / "test-venv-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(*pip, "--python", str(python), "install", "-q", "--no-deps", str(wheel))
    return venv


def test_a_wheel_install_finds_the_shipped_table_by_device_name(installed: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OFA_EDGE_TABLES"}
    where = subprocess.run(
        [installed / "bin" / "python", "-c", "import ofa_edge; print(ofa_edge.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed), where.stdout + where.stderr
    res = subprocess.run(
        [
            installed / "bin" / "ofa-edge",
            "--json",
            "search",
            "--device",
            "testbed-local",
            "--latency-ms",
            "0.6",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no table here: it must come from the installed package
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    table = Path(doc["tables"]["testbed-local"])
    assert table.is_relative_to(installed) and table.parent.name == "latency_tables", table
    assert doc["results"][0]["latency_ms"]["testbed-local"] <= 0.6
