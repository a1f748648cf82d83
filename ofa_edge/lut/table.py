"""Latency lookup tables: the versioned JSON format, validation, prediction and MIT's YAML.

A table holds one device's measured latency of every op of a supernet, for ONE runtime,
precision, thread count and delegate (a table is only valid for the conditions it was measured
under, so they are part of it). Prediction sums the subnet's ops, then applies the device's
calibration ``e2e = a * sum + q * sum**2 + c * n_ops + b`` when one was fitted against
whole-network measurements (``c``: the runtime's per-call overhead each op's own measurement paid,
which a whole network pays once; ``n_ops`` counts the subnet's ops; ``q``: how whole networks
slow beyond the sum of their ops as they grow, e.g. once their weights outgrow the caches).
Format (``schema_version`` 6; versions 1-5 are still read: version 1 lacks ``reference``
and ``raw_median_ms``, calibrations before version 3 have no ``c`` and before version 5 no
``q``, both read as 0, references before version 4 have no ``timing``, read as
"bracketed", and entries before version 6 have no ``passes_ms``, read as one pass)::

    {"schema_version": 6, "kind": "ofa-edge/latency-table",
     "supernet": {"id", "width_mult", "n_classes", "space": {...}},
     "device": {"name", "fingerprint": {...}}, "runtime": {"name", "version"},
     "precision": "fp32" | "int8", "threads": N, "delegate": "cpu", "created": ISO-8601,
     "calibration": null | {"a", "b", "c", "q", "subnets", "fitted": ISO-8601},
     "reference": null | {"model", "resolution", "median_ms", "measured": ISO-8601,
                          "timings_ms": [...], "timing": "interleaved" | "bracketed"},
     "entries": {RESOLUTION: {KEY: {"median_ms", "p10_ms", "p90_ms", "samples",
                                    "measured": ISO-8601, "remeasured": bool,
                                    "raw_median_ms", "passes_ms": [...]}}}}

``reference`` is the model every op is timed against to cancel device drift
(``ofa_edge.lut.timing``; ``timing`` says how): each entry's times are its raw times scaled by
``reference.median_ms`` over the reference times measured with it, so all entries are at one
device speed. ``timings_ms`` lists every reference
timing of the builds and ``median_ms`` is their median (an optional field: tables without it
count their ``median_ms`` as their one timing).

``passes_ms`` holds an entry's value from each pass of ``lut build`` (every op measured again, at
another time and in another order) and ``median_ms`` is their median: one pass's value moves by
several percent with the device's state, and a search picks exactly the ops measured low, so a
table of one pass under-predicts the subnets a search finds.

Entries are grouped by resolution as in MIT's per-resolution YAML files: an op shared by several
resolutions (the classifier, say) appears under each (measured once by ``lut build``, but MIT's
tables hold a separate measurement per file). ``p10_ms``/``p90_ms`` are null for tables imported
from MIT's YAML, which keep mean and std.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ofa_edge.errors import OfaEdgeError
from ofa_edge.lut.keys import subnet_ops
from ofa_edge.supernet.space import ArchConfig, SearchSpace
from ofa_edge.supernet.spec import MBv3Spec

SCHEMA_VERSION = 6
#: How many passes ``lut build`` measures every op in by default (``passes_ms``).
PASSES = 3
KIND = "ofa-edge/latency-table"
PRECISIONS = ("fp32", "int8")


def apply_calibration(cal: dict[str, Any], op_sum: Any, n_ops: Any) -> Any:
    """``a * op_sum + q * op_sum**2 + c * n_ops + b`` for scalars or arrays (``c`` is 0 before
    schema 3, ``q`` before schema 5); the search's vectorized costs call this very function."""
    return cal["a"] * op_sum + cal.get("q", 0.0) * (op_sum * op_sum) + cal.get("c", 0.0) * n_ops + cal["b"]


def describe_calibration(cal: dict[str, Any]) -> str:
    """One line for people: the fitted terms in ms (and µs per op)."""
    text = f"a={cal['a']:.3f}, c={1e3 * cal.get('c', 0.0):.1f} µs/op, b={cal['b']:.3f} ms"
    return text + (f", q={cal['q']:.3f}/ms" if cal.get("q") else "")


class LutError(OfaEdgeError, ValueError):
    """A latency table that is malformed, truncated, too new, or lacks an op."""

    reference = "bad-latency-table"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Entry:
    median_ms: float
    p10_ms: float | None = None
    p90_ms: float | None = None
    samples: int = 0
    measured: str = ""
    remeasured: bool = False
    raw_median_ms: float | None = None  # before reference normalization
    passes_ms: list[float] | None = None  # each pass's value; None: one pass (median_ms)

    @property
    def passes(self) -> list[float]:
        """The entry's value from each pass it was measured in (ms, at the table's level)."""
        return list(self.passes_ms) if self.passes_ms else [self.median_ms]

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class LatencyTable:
    """One device's op latencies for one supernet, runtime, precision and thread count."""

    supernet: dict[str, Any]
    device: dict[str, Any]
    runtime: dict[str, Any]
    precision: str = "fp32"
    threads: int = 1
    delegate: str = "cpu"
    entries: dict[int, dict[str, Entry]] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    reference: dict[str, Any] | None = None
    created: str = field(default_factory=now)

    # --- the supernet it describes -----------------------------------------------------------

    @property
    def spec(self) -> MBv3Spec:
        sup = self.supernet
        return MBv3Spec(sup["width_mult"], sup["n_classes"], SearchSpace(**sup["space"]))

    @property
    def model_format(self) -> str:
        """The model file format the table's runtime runs ("onnx" or "tflite")."""
        return "tflite" if self.runtime.get("name") == "tflite" else "onnx"

    @property
    def resolutions(self) -> list[int]:
        return sorted(self.entries)

    # --- prediction ----------------------------------------------------------------------------

    def op_sum(self, arch: ArchConfig) -> float:
        """Sum of the table's latencies of ``arch``'s ops (ms), uncalibrated."""
        return self._sum_and_count(arch)[0]

    def op_count(self, arch: ArchConfig) -> int:
        """How many of the table's ops ``arch`` runs (the calibration's ``n_ops``)."""
        return len(subnet_ops(self.spec, arch.validate(self.spec.space)))

    def _sum_and_count(self, arch: ArchConfig) -> tuple[float, int]:
        spec = self.spec
        arch = arch.validate(spec.space)
        total = 0.0
        table = self.entries.get(arch.r, {})
        ops = subnet_ops(spec, arch)
        for op in ops:
            entry = table.get(op.key)
            if entry is None:
                raise LutError(
                    f"the latency table has no entry for {op.key} (needed at r={arch.r})",
                    hint=f"resolutions in the table: {self.resolutions}; "
                    "rebuild it with `ofa-edge lut build` for this resolution",
                )
            total += entry.median_ms
        return total, len(ops)

    def predict(self, arch: ArchConfig, calibrated: bool = True) -> float:
        """Predicted whole-network latency (ms) of ``arch`` on this table's device."""
        total, n_ops = self._sum_and_count(arch)
        if calibrated and self.calibration:
            return apply_calibration(self.calibration, total, n_ops)
        return total

    # --- files -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "supernet": self.supernet,
            "device": self.device,
            "runtime": self.runtime,
            "precision": self.precision,
            "threads": self.threads,
            "delegate": self.delegate,
            "created": self.created,
            "calibration": self.calibration,
            "reference": self.reference,
            "entries": {
                str(r): {k: e.to_dict() for k, e in sorted(self.entries[r].items())} for r in self.resolutions
            },
        }

    def save(self, path: str | Path) -> None:
        """Write atomically (temp file + rename): a crash never leaves half a table."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(tmp, path)

    @classmethod
    def from_dict(cls, data: Any, source: str = "latency table") -> LatencyTable:
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise LutError(f"{source} is not an ofa-edge latency table (no kind {KIND!r})")
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise LutError(f"{source}: schema_version is missing")
        if version > SCHEMA_VERSION:
            raise LutError(
                f"{source} has schema_version {version}; this ofa-edge reads up to {SCHEMA_VERSION}",
                hint="upgrade ofa-edge (pip install -U ofa-edge)",
            )
        try:
            entries: dict[int, dict[str, Entry]] = {}
            for r, section in data["entries"].items():
                for key, e in section.items():
                    entry = Entry(**e)
                    median = entry.median_ms
                    if not isinstance(median, (int, float)) or not math.isfinite(median):
                        raise ValueError(f"entry {r}/{key}: median_ms={median!r}")
                    entries.setdefault(int(r), {})[key] = entry
            table = cls(
                supernet=data["supernet"],
                device=data["device"],
                runtime=data["runtime"],
                precision=data["precision"],
                threads=int(data["threads"]),
                delegate=data.get("delegate", "cpu"),
                entries=entries,
                calibration=data.get("calibration"),
                reference=data.get("reference"),
                created=data.get("created", ""),
            )
            table.spec  # noqa: B018 - the supernet description must be usable
        except (KeyError, TypeError, ValueError) as err:
            raise LutError(f"{source} is malformed: {type(err).__name__}: {err}") from None
        if table.precision not in PRECISIONS:
            raise LutError(f"{source}: precision {table.precision!r} is not one of {list(PRECISIONS)}")
        return table

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise LutError(f"cannot read latency table {path}: {err.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise LutError(
                f"latency table {path} is not valid JSON ({err.msg} at line {err.lineno}); truncated?",
                hint="rebuild it: `ofa-edge lut build` resumes from what was measured",
            ) from None
        return cls.from_dict(data, str(path))


# --- MIT's YAML tables ----------------------------------------------------------------------------


def import_ofa(folder: str | Path, supernet: dict[str, Any], device_name: str = "imported") -> LatencyTable:
    """A table from MIT's ``<r>_lookup_table.yaml`` files (their ``mean`` becomes the median)."""
    import yaml

    folder = Path(folder)
    files = sorted(folder.glob("*_lookup_table.yaml"), key=lambda p: int(p.name.split("_")[0]))
    if not files:
        raise LutError(f"no <resolution>_lookup_table.yaml files in {folder}")
    entries: dict[int, dict[str, Entry]] = {}
    for file in files:
        try:
            data = yaml.load(file.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            section = entries.setdefault(int(file.name.split("_")[0]), {})
            for key, value in data.items():
                section[key] = Entry(
                    median_ms=float(value["mean"]),
                    samples=int(value.get("count", 0)),
                    measured="imported",
                )
        except (yaml.YAMLError, AttributeError, KeyError, TypeError, ValueError) as err:
            raise LutError(f"{file} is not an OFA latency table: {type(err).__name__}: {err}") from None
    return LatencyTable(
        supernet=supernet,
        device={"name": device_name, "fingerprint": {"source": str(folder)}},
        runtime={"name": "unknown (imported from OFA)", "version": None},
        entries=entries,
    )


def export_ofa(table: LatencyTable, folder: str | Path) -> list[Path]:
    """MIT's YAML layout, one file per resolution (``mean``: our median; ``std`` from p10/p90)."""
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for r in table.resolutions:
        out = {}
        for key, e in table.entries[r].items():
            # A normal's p10-p90 span is 2.563 standard deviations.
            spread = (e.p90_ms - e.p10_ms) / 2.563 if e.p10_ms is not None and e.p90_ms is not None else 0.0
            out[key] = {"count": e.samples, "mean": e.median_ms, "std": spread}
        path = folder / f"{r}_lookup_table.yaml"
        path.write_text(yaml.safe_dump(out, sort_keys=True))
        written.append(path)
    return written
