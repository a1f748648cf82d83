"""The table store: one search path (working directory, $OFA_EDGE_TABLES, the user's data
directory, the shipped tables) and one place new tables go."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ofa_edge.lut.store import find_table, new_table_path, shipped_tables_dir, table_file_name

NAME = table_file_name("testbed-local", "ofa-mbv3-cifar10", "fp32", 1)


def test_the_first_folder_on_the_search_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd, env_a, env_b, data = (tmp_path / n for n in ("cwd", "env-a", "env-b", "xdg"))
    for folder in (cwd, env_a, env_b):
        folder.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("OFA_EDGE_TABLES", f"{env_a}:{env_b}")
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    user = data / "ofa-edge" / "latency_tables"
    shipped = shipped_tables_dir() / NAME
    assert shipped.is_file()

    def find() -> Path:
        return find_table("testbed-local", "ofa-mbv3-cifar10", precision="fp32", threads=1)

    assert find() == shipped
    for folder in (user, env_b, env_a, cwd):  # each nearer folder takes over from the ones after it
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(shipped, folder / NAME)
        assert find().resolve() == (folder / NAME).resolve()


def test_new_tables_go_to_the_first_env_folder_else_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OFA_EDGE_TABLES", raising=False)
    assert new_table_path("pi", "s", "int8", 4) == Path(table_file_name("pi", "s", "int8", 4))
    monkeypatch.setenv("OFA_EDGE_TABLES", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert new_table_path("pi", "s", "int8", 4) == tmp_path / "a" / "pi_s_int8_t4.json"
