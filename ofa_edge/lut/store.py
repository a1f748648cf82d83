"""Where latency tables live: their file names and the one search path every command uses.

A table is named ``<device>_<supernet>_<precision>_t<threads>.json``. Commands look for it, in
order, in: the working directory, each folder of ``$OFA_EDGE_TABLES`` (``os.pathsep``-separated),
the per-user data directory (platformdirs, e.g. ``~/.local/share/ofa-edge/latency_tables``), and
the tables shipped inside the package (``ofa_edge.latency_tables``, the repository's
``latency_tables/`` folder). ``lut build`` writes a new table into the first folder of
``$OFA_EDGE_TABLES`` when it is set, else into the working directory.
"""

from __future__ import annotations

import glob
import os
from importlib import resources
from pathlib import Path

import platformdirs

from ofa_edge.lut.table import LatencyTable, LutError
from ofa_edge.supernet.family import FamilySpec

TABLE_NAME = "{device}_{supernet}_{precision}_t{threads}.json"
#: Extra folders to look for tables in (and the first one to write new tables to).
TABLES_ENV = "OFA_EDGE_TABLES"


def table_file_name(device: str, supernet: str, precision: str, threads: int) -> str:
    """The file name ``lut build`` gives a table, and that every lookup expects."""
    return TABLE_NAME.format(device=device, supernet=supernet, precision=precision, threads=threads)


def shipped_tables_dir() -> Path:
    """The tables that ship inside the package (present in wheels and editable installs alike)."""
    return Path(str(resources.files("ofa_edge.latency_tables")))


#: MIT's published latency tables, shipped with ofa-edge's: name -> (folder, the supernet measured).
OFA_TABLES = {"note10": ("ofa_note10_lut_w1.2", "ofa_mbv3_d234_e346_k357_w1.2")}


def ofa_tables(name: str) -> tuple[Path, str] | None:
    """The shipped folder of MIT's latency tables ``name`` and their supernet; None for other names."""
    if name not in OFA_TABLES:
        return None
    folder, supernet = OFA_TABLES[name]
    return shipped_tables_dir() / folder, supernet


def user_tables_dir() -> Path:
    """The per-user folder for tables (platformdirs' data dir)."""
    return Path(platformdirs.user_data_dir("ofa-edge")) / "latency_tables"


def _env_folders() -> list[Path]:
    return [Path(p) for p in os.environ.get(TABLES_ENV, "").split(os.pathsep) if p]


def table_folders() -> list[Path]:
    """Where tables are looked for, in order (see the module docstring)."""
    return [Path.cwd(), *_env_folders(), user_tables_dir(), shipped_tables_dir()]


def new_table_path(device: str, supernet: str, precision: str, threads: int) -> Path:
    """Where ``lut build`` writes a table when no ``--out`` is given."""
    folder = next(iter(_env_folders()), Path("."))
    return folder / table_file_name(device, supernet, precision, threads)


def find_table(
    device: str,
    supernet: str,
    *,
    precision: str = "fp32",
    threads: int | None = None,
    folders: list[Path] | None = None,
) -> Path:
    """The first table on the search path for ``device`` and ``supernet``; any thread count when
    ``threads`` is None (then more than one in a folder is an error)."""
    folders = folders if folders is not None else table_folders()
    fields = {"device": glob.escape(device), "supernet": glob.escape(supernet), "precision": precision}
    name = TABLE_NAME.format(**fields, threads="*" if threads is None else threads)
    for folder in folders:
        found = sorted(folder.glob(name))
        if len(found) > 1:
            raise LutError(
                f"several latency tables for {device} in {folder}: {', '.join(p.name for p in found)}",
                hint="pick one with --threads N or --lut PATH",
            )
        if found:
            return found[0]
    raise LutError(
        f"no latency table for device {device!r} and supernet {supernet} "
        f"({name} in {', '.join(str(f) for f in folders)})",
        hint=f"measure one: ofa-edge lut build {device} --supernet {supernet} (or pass --lut PATH)",
    )


def locate_table(
    path: str | Path | None,
    device: str,
    supernet: str,
    *,
    precision: str = "fp32",
    threads: int | None = None,
) -> Path:
    """The table a command works on: ``path`` when given (it must exist), else the one
    :func:`find_table` finds for ``device`` and ``supernet``."""
    if path is None:
        return find_table(device, supernet, precision=precision, threads=threads)
    if not Path(path).is_file():
        raise LutError(f"no latency table at {path}", hint="check the --lut path")
    return Path(path)


def load_table_for(path: Path, supernet: str, spec: FamilySpec) -> LatencyTable:
    """Load a table and refuse it unless it describes ``supernet`` (id and layout)."""
    table = LatencyTable.load(path)
    their = table.supernet.id
    if their != supernet or table.spec != spec:
        raise LutError(
            f"latency table {path} was measured for supernet {their!r}, not {supernet!r}",
            hint=f"build one for it: ofa-edge lut build {table.device.name} --supernet {supernet}",
        )
    return table
