"""Device commands on one device or on a fleet: ``bench``, ``push``, ``lut build|validate`` and
``specialize`` run through :func:`run_devices`.

A command gives ``one(spec, progress)``, its work on one device, returning a ``DeviceRun``. Given
one device name the command prints that run as it always has (an error exits as usual). Given
several names, ``--all`` or ``--group``, the devices run concurrently (``--jobs`` at once), each
with its own progress line; one failure never stops the others; a summary table closes the run
(device, status, table, subnet, predicted and measured ms, seconds, cost: the columns some device
has) and each failure is one ``ofa-edge: error: NAME: ...`` line on stderr. With ``--ray
ADDRESS`` (or ``$OFA_EDGE_RAY_ADDRESS``) each device's work runs on the Ray node that owns the
device (``ofa_edge.devices.farm``); ``node`` is that node's id (null: run from this process).
``--json`` prints one ``ofa-edge/fleet/1`` document::

    {"command": "lut-build", "exit_code": 4, "ok": 3, "failed": 1,
     "devices": [{"device", "ok", "seconds", "node", "table", "subnet": {ks, e, d, r} | null,
                  "predicted_ms", "measured_ms", "cost",
                  "result": the one-device --json document (without schema) | null,
                  "error": {"reference", "message", "hint", "exit_code"} | null}, ...]}

The exit status is ``ofa_edge.errors.fleet_exit_code``: 0 when every device succeeded, else the
most specific error family all failures share.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofa_edge.cli.common import select_devices, several_devices
from ofa_edge.cli.output import SILENT, DeviceLines, Output, Progress
from ofa_edge.devices.farm import Attempt, farm_address
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.errors import OfaEdgeError, fleet_exit_code


@dataclass(frozen=True)
class DeviceRun:
    """What a command did on one device: its one-device output and its summary row."""

    doc: dict[str, Any]  # the command's --json document (without schema)
    text: str
    table: str | None = None
    subnet: dict[str, Any] | None = None  # the subnet's arch dict (its family's keys)
    predicted_ms: float | None = None
    measured_ms: float | None = None
    cost: str | None = None


def device_path(path: Path, device: str, several: bool) -> Path:
    """A file option's path for ``device``: ``path`` itself for one device; for several, each
    device's own, ``NAME.DEVICE.EXT`` beside it."""
    return path.with_name(f"{path.stem}.{device}{path.suffix}") if several else path


def subnet_label(arch: dict[str, Any]) -> str:
    """A short name of a subnet for the summary: resolution, depths and a digest of the rest
    (every family's arch dict has ``r`` and ``d``)."""
    digest = hashlib.sha256(json.dumps(arch).encode()).hexdigest()[:6]
    return f"r{arch['r']} d{''.join(map(str, arch['d']))} #{digest}"


def _error_line(name: str, err: OfaEdgeError) -> str:
    """The error's one line, naming the device (most device errors already start with it)."""
    text = str(err)
    return text if text.startswith(f"{name}: ") else f"{name}: {text}"


def run_devices(
    args: argparse.Namespace,
    out: Output,
    kind: str,
    one: Callable[[DeviceSpec, Progress], DeviceRun],
) -> int:
    """Run ``one`` on the devices the command line selects and print the outcome (module
    docstring); the exit status. On a Ray farm (``--ray``) even one device runs as a fleet, each
    on the node that owns it, reporting only how it ended."""
    specs = select_devices(args, args.names)
    farm = farm_address(getattr(args, "ray", None))  # demo reaches local alone: no --ray
    if not several_devices(args) and not farm:
        run = one(specs[0], out)
        out.result(kind, run.doc, run.text)
        return 0
    from ofa_edge.devices.fleet import run_attempts

    lines = DeviceLines([spec.name for spec in specs], out.json_mode)

    def here(spec: DeviceSpec) -> DeviceRun:
        run = one(spec, lines.device(spec.name))
        lines.status(spec.name, "ok")
        return run

    work = functools.partial(_silently, one) if farm else here
    try:
        attempts = run_attempts(specs, work, lines.status, args.jobs, farm)
    finally:
        lines.close()
    failures = [a.result for a in attempts.values() if isinstance(a.result, OfaEdgeError)]
    code = fleet_exit_code(failures)
    records = [_record(name, a) for name, a in attempts.items()]
    out.result(
        "fleet",
        {
            "command": kind,
            "exit_code": code,
            "ok": len(attempts) - len(failures),
            "failed": len(failures),
            "devices": records,
        },
        _summary(records),
    )
    for name, a in attempts.items():
        if isinstance(a.result, OfaEdgeError):
            print(f"ofa-edge: error: {_error_line(name, a.result)}", file=sys.stderr)
    return code


def _silently(one: Callable[[DeviceSpec, Progress], DeviceRun], spec: DeviceSpec) -> DeviceRun:
    """``one`` on a Ray farm node: the work sent there carries no terminal, so shows no progress."""
    return one(spec, SILENT)


def _record(name: str, attempt: Attempt[DeviceRun]) -> dict[str, Any]:
    """One device's record of the fleet document."""
    result, ran = attempt.result, {"seconds": attempt.seconds, "node": attempt.node}
    if isinstance(result, OfaEdgeError):
        error = {"reference": result.reference, "message": _error_line(name, result), "hint": result.hint}
        return {
            "device": name,
            "ok": False,
            **ran,
            **dict.fromkeys(("table", "subnet", "predicted_ms", "measured_ms", "cost", "result")),
            "error": {**error, "exit_code": result.exit_code},
        }
    return {
        "device": name,
        "ok": True,
        **ran,
        "table": result.table,
        "subnet": result.subnet,
        "predicted_ms": result.predicted_ms,
        "measured_ms": result.measured_ms,
        "cost": result.cost,
        "result": result.doc,
        "error": None,
    }


#: The summary's columns: heading, and the cell of a device's record (None: nothing to show).
COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], str | None]], ...] = (
    ("device", lambda r: r["device"]),
    ("status", lambda r: "ok" if r["ok"] else f"FAILED ({r['error']['reference']})"),
    ("table", lambda r: r["table"]),
    ("subnet", lambda r: subnet_label(r["subnet"]) if r["subnet"] else None),
    ("predicted ms", lambda r: None if r["predicted_ms"] is None else f"{r['predicted_ms']:.3f}"),
    ("measured ms", lambda r: None if r["measured_ms"] is None else f"{r['measured_ms']:.3f}"),
    ("seconds", lambda r: f"{r['seconds']:.1f}"),
    ("cost", lambda r: r["cost"]),
    ("ray node", lambda r: r["node"] and r["node"][:12]),
)


def _summary(records: list[dict[str, Any]]) -> str:
    """The table that closes a fleet run: one row per device, the columns some device fills."""
    cells = [[cell(r) for r in records] for _, cell in COLUMNS]
    shown = [(heading, column) for (heading, _), column in zip(COLUMNS, cells) if any(column)]
    rows = [[heading for heading, _ in shown]] + [
        [column[i] or "-" for _, column in shown] for i in range(len(records))
    ]
    widths = [max(len(row[c]) for row in rows) for c in range(len(shown))]
    failed = sum(not r["ok"] for r in records)
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([*lines, f"{len(records) - failed} of {len(records)} devices ok"])
