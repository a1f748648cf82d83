"""Shared fixtures: paths, and a clean environment for the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The test bed: real sshd devices on loopback, and an ADB phone double behind the real adb client.
pytest_plugins = ("tests.testbed", "tests.adb_testbed")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own download cache and no mirror from the caller's environment."""
    monkeypatch.setenv("OFA_EDGE_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("OFA_EDGE_MIRROR", raising=False)
    monkeypatch.delenv("OFA_EDGE_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    os.environ.setdefault("OMP_NUM_THREADS", "2")
