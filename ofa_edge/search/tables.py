"""Finding each device's latency table for a supernet: ``--lut`` paths, else ``lut build``'s names."""

from __future__ import annotations

import glob
from pathlib import Path

from ofa_edge.lut.table import TABLE_NAME, LatencyTable, LutError
from ofa_edge.supernet.spec import MBv3Spec

#: Shipped tables (the repository's ``latency_tables/`` folder; absent from wheels).
SHIPPED_TABLES = Path(__file__).resolve().parents[2] / "latency_tables"


def find_table(
    device: str,
    supernet: str,
    *,
    precision: str = "fp32",
    threads: int | None = None,
    folders: tuple[Path, ...] | None = None,
) -> Path:
    """The table ``lut build`` would have written for ``device``, in the working directory or
    the shipped tables; any thread count if ``threads`` is None (more than one: an error)."""
    folders = folders if folders is not None else (Path.cwd(), SHIPPED_TABLES)
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


def load_table_for(path: Path, supernet: str, spec: MBv3Spec) -> LatencyTable:
    """Load a table and refuse it unless it describes ``supernet`` (id and layout)."""
    table = LatencyTable.load(path)
    their = table.supernet.get("id")
    if their != supernet or table.spec != spec:
        raise LutError(
            f"latency table {path} was measured for supernet {their!r}, not {supernet!r}",
            hint=f"build one for it: ofa-edge lut build {table.device.get('name')} --supernet {supernet}",
        )
    return table
