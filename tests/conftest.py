"""Shared fixtures: paths, and a clean environment for the CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

# The test bed: real sshd devices on loopback, and an ADB phone double behind the real adb client.
pytest_plugins = ("tests.testbed", "tests.adb_testbed")

ROOT = Path(__file__).resolve().parents[1]
#: Data the tests need that the project does not make: MIT's files, shipped with the repository
#: (a user's clone has no ../shared beside it).
MIT_DATA = ROOT / "tests" / "data" / "mit"
#: MIT's own latency tables for the Samsung Note10 (w1.2), shipped with the project's tables.
NOTE10 = ROOT / "latency_tables" / "ofa_note10_lut_w1.2"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own download cache and local agent folder (never the user's), and no
    mirror from the caller's environment."""
    monkeypatch.setenv("OFA_EDGE_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("OFA_EDGE_AGENT_DIR", str(tmp_path_factory.mktemp("agent")))
    monkeypatch.delenv("OFA_EDGE_MIRROR", raising=False)
    monkeypatch.delenv("OFA_EDGE_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    os.environ.setdefault("OMP_NUM_THREADS", "2")


def _tool_version(*command: str) -> str:
    """The first line a tool prints for its version, or why there is none."""
    try:
        res = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unavailable ({type(err).__name__})"
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    return " / ".join(lines[:2]) if lines else f"no output (exit {res.returncode})"


def pytest_report_header() -> list[str]:
    """The versions of the outside tools the test bed drives, recorded at the top of every run
    (a Debian update of adb or OpenSSH can change what the tests see)."""
    import onnxruntime

    return [
        f"adb client: {_tool_version('adb', 'version')}",
        f"sshd: {_tool_version('/usr/sbin/sshd', '-V')}",
        f"onnxruntime: {onnxruntime.__version__}",
    ]
