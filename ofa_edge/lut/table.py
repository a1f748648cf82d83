"""Latency lookup tables: the versioned JSON format, validation, prediction and MIT's YAML.

A table holds one device's measured latency of every op of a supernet, for ONE runtime,
precision, thread count and backend (providers or delegate: a table is only valid for the
conditions it was measured under, so they are part of it, and a device whose backend is another
is refused the table, :func:`check_backend`). Prediction sums the subnet's ops, then applies the device's
calibration ``e2e = a * sum + q * sum**2 + c * n_ops + b`` when one was fitted against
whole-network measurements (``c``: the runtime's per-call overhead each op's own measurement paid,
which a whole network pays once; ``n_ops`` counts the subnet's ops; ``q``: how whole networks
slow beyond the sum of their ops as they grow, e.g. once their weights outgrow the caches).
Format (``schema_version`` 7; versions 1-6 are still read: version 1 lacks ``reference``
and ``raw_median_ms``, calibrations before version 3 have no ``c`` and before version 5 no
``q``, both read as 0, references before version 4 have no ``timing``, read as
"bracketed", entries before version 6 have no ``passes_ms``, read as one pass, and tables
before version 7 have ``"delegate": "cpu"`` in place of ``backend``, read as their runtime's
default backend, the CPU, no ``adapted``, read as null, and entries without energy)::

    {"schema_version": 7, "kind": "ofa-edge/latency-table",
     "supernet": {"id", ["family",] "width_mult", "n_classes", "space": {...}
                  [, "stem_stride", "stage_strides": [...]]},   # the spec's to_dict()
     "device": {"name", "fingerprint": {...}}, "runtime": {"name", "version"},
     "precision": "fp32" | "fp16" | "int8", "threads": N, "created": ISO-8601,
     "backend": {"runtime", "providers": [{"name", OPTION...}] | "delegate", "library", "options",
                 "precision": "fp32" | "fp16" | "int8", "allow_partial": bool},
     "calibration": null | {"a", "b", "c", "q", "subnets", "fitted": ISO-8601, "seed", "rounds"},
     "reference": null | {"model", "resolution", "median_ms", "measured": ISO-8601,
                          "timings_ms": [...], "timing": "interleaved" | "bracketed"},
     "adapted": null | {"source_device", "source_created", "source_fingerprint": {...},
                        "samples", "scale", "type_scales": {TYPE: factor}, "ridge",
                        "loo_mape_pct", "fitted": ISO-8601},
     "entries": {RESOLUTION: {KEY: {"median_ms", "p10_ms", "p90_ms", "samples",
                                    "measured": ISO-8601 | "adapted", "remeasured": bool,
                                    "raw_median_ms", "passes_ms": [...],
                                    "placement": null | {"target", "whole", "nodes", "on_target",
                                                         "partitions", "by_provider"}
                                    [, "energy_mj", "passes_mj": [...]]}}}}

``backend`` is ``ofa_edge.devices.backend.Backend.to_dict()``: the model file's precision is
``precision``, the backend's the precision its accelerator may compute in. An entry's
``placement`` is set when its op did not run wholly on the backend's accelerator, which only a
backend with ``allow_partial`` measures: the entry then says what it measured.

``adapted`` is set on a table made by ``ofa-edge lut adapt`` (``ofa_edge.lut.adapt``): its
entries are another device's, multiplied per op type by the factors fitted on whole subnets
measured on this device, and its ``reference`` and ``calibration`` were measured here.

``reference`` is the model every op is timed against to cancel device drift
(``ofa_edge.measure.timing``; ``timing`` says how): each entry's times are its raw times scaled by
``reference.median_ms`` over the reference times measured with it, so all entries are at one
device speed. ``timings_ms`` lists every reference
timing of the builds and ``median_ms`` is their median (an optional field: tables without it
count their ``median_ms`` as their one timing).

``passes_ms`` holds an entry's value from each pass of ``lut build`` (every op measured again, at
another time and in another order) and ``median_ms`` is their median: one pass's value moves by
several percent with the device's state, and a search picks exactly the ops measured low, so a
table of one pass under-predicts the subnets a search finds.

``energy_mj`` (tables built on a device with power rails, a Jetson's INA3221) is the op's energy
per inference: the median of its passes' values ``passes_mj``, each the device's input power
while the op ran times its time per run. Energies are as measured (not moved to the reference's
speed), and a subnet's energy is predicted as the sum of its ops' (no calibration).

Entries are grouped by resolution as in MIT's per-resolution YAML files: an op shared by several
resolutions (the classifier, say) appears under each (measured once by ``lut build``, but MIT's
tables hold a separate measurement per file). ``p10_ms``/``p90_ms`` are null for tables imported
from MIT's YAML, which keep mean and std.

In memory the metadata are dataclasses (:class:`SupernetRef`, :class:`DeviceRecord`,
:class:`Runtime`, :class:`Calibration`, :class:`Reference`); their ``from_dict``/``to_dict`` are
the only places the file's dicts appear, and a table read then written is the same file.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ofa_edge.devices.backend import Backend, default_backend
from ofa_edge.devices.spec import PRECISIONS, DeviceSpec, model_format
from ofa_edge.errors import LutError
from ofa_edge.files import write_atomic, write_json
from ofa_edge.lut.keys import subnet_ops
from ofa_edge.supernet.family import Arch, FamilySpec, spec_from_dict

SCHEMA_VERSION = 7
#: How many passes ``lut build`` measures every op in by default (``passes_ms``).
PASSES = 3
KIND = "ofa-edge/latency-table"
#: Entry fields written only by devices that measure energy (power rails).
ENERGY_FIELDS = ("energy_mj", "passes_mj")


def apply_calibration(cal: Calibration, op_sum: Any, n_ops: Any) -> Any:
    """``a * op_sum + q * op_sum**2 + c * n_ops + b`` for scalars or arrays; the search's
    vectorized costs call this very function."""
    return cal.a * op_sum + cal.q * (op_sum * op_sum) + cal.c * n_ops + cal.b


def describe_calibration(cal: Calibration) -> str:
    """One line for people: the fitted terms in ms (and µs per op)."""
    text = f"a={cal.a:.3f}, c={1e3 * cal.c:.1f} µs/op, b={cal.b:.3f} ms"
    return text + (f", q={cal.q:.3f}/ms" if cal.q else "")


@dataclass(frozen=True)
class SupernetRef:
    """The supernet a table describes: its registry id and its layout, so a table is only used
    with the network it was measured for.

    ``extra`` keeps keys of the file's description this version does not know (or states
    redundantly, like MIT's strides spelled out), so they are written back unchanged.
    """

    id: str
    spec: FamilySpec
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def named(cls, name: str) -> SupernetRef:
        """The reference of a registered supernet (builds it once to read its layout)."""
        from ofa_edge.supernet.registry import describe_supernet

        return cls.from_dict(describe_supernet(name))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SupernetRef:
        spec = spec_from_dict(data)
        known = {"id", *spec.to_dict()}
        return cls(data["id"], spec, {k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.spec.to_dict(), **self.extra}


@dataclass(frozen=True)
class DeviceRecord:
    """The device a table was measured on: its inventory name and its fingerprint then (the
    agent's free-form report: CPU, cores, OS, runtimes...), to tell later whether it changed."""

    name: str
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceRecord:
        return cls(data["name"], data.get("fingerprint", {}))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fingerprint": self.fingerprint}


@dataclass(frozen=True)
class Runtime:
    """The inference runtime a table was measured with ("onnxruntime", "tflite") and its version."""

    name: str
    version: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Runtime:
        return cls(data["name"], data.get("version"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}


@dataclass(frozen=True)
class Calibration:
    """A whole-network correction of the op sum, ``a * sum + q * sum**2 + c * n_ops + b`` (ms),
    and how it was fitted (``None``: not recorded, as for a bare fit).

    ``c`` is absent before schema 3 and ``q`` before schema 5: both read as 0.
    """

    a: float
    b: float
    c: float = 0.0
    q: float = 0.0
    subnets: int | None = None  # how many whole subnets it was fitted on
    fitted: str | None = None  # ISO-8601
    seed: int | None = None  # of the subnets drawn
    rounds: int | None = None  # timing rounds per subnet

    @property
    def terms(self) -> dict[str, float]:
        """The fitted coefficients alone (what reports show)."""
        return {"a": self.a, "b": self.b, "c": self.c, "q": self.q}

    def scaled(self, factor: float) -> Calibration:
        """The same correction for a table whose every ms is multiplied by ``factor`` (``b`` and
        ``c`` are in ms, ``q`` in 1/ms, ``a`` has no unit)."""
        return replace(self, b=self.b * factor, c=self.c * factor, q=self.q / factor)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Reference:
    """The model every op of a table is timed against (``ofa_edge.measure.timing``) and its level:
    ``median_ms`` is the median of ``timings_ms``, all its timings during the builds.

    Before schema 4 ``timing`` is absent and read as "bracketed"; a table without
    ``timings_ms`` counts its ``median_ms`` as its one timing.
    """

    model: str  # what the reference is, for people
    resolution: int
    median_ms: float
    measured: str  # ISO-8601
    timings_ms: list[float]
    timing: str = "bracketed"  # "interleaved" | "bracketed"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reference:
        return cls(**{"timings_ms": [data["median_ms"]], **data})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


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
    placement: dict[str, Any] | None = None  # not wholly on the accelerator (allow_partial): where
    energy_mj: float | None = None  # per inference, median of passes_mj; None: no power rails
    passes_mj: list[float] | None = None

    @property
    def passes(self) -> list[float]:
        """The entry's value from each pass it was measured in (ms, at the table's level)."""
        return list(self.passes_ms) if self.passes_ms else [self.median_ms]

    def to_dict(self) -> dict[str, Any]:
        """The entry's fields; the energy ones only where the device measured energy."""
        return {k: v for k, v in vars(self).items() if v is not None or k not in ENERGY_FIELDS}


@dataclass(frozen=True)
class Adaptation:
    """Where an adapted table's entries come from: another device's table, whose entries were
    multiplied by ``type_scales[op type]`` fitted on ``samples`` whole subnets measured here."""

    source_device: str
    source_created: str
    source_fingerprint: dict[str, Any]
    samples: int
    scale: float  # the common factor, source -> this device
    type_scales: dict[str, float]  # the factor of each op type (``ofa_edge.lut.adapt.op_type``)
    ridge: float | None  # the shrinkage toward ``scale`` chosen (None: the common factor alone)
    loo_mape_pct: float  # leave-one-out error on the measured subnets
    fitted: str  # ISO-8601
    #: "scaled": the source's calibration times ``scale``; "refitted": fitted on the samples.
    calibration: str = "scaled"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Adaptation:
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LatencyTable:
    """One device's op latencies for one supernet, runtime, backend, precision and thread count."""

    supernet: SupernetRef
    device: DeviceRecord
    runtime: Runtime
    precision: str = "fp32"
    threads: int = 1
    entries: dict[int, dict[str, Entry]] = field(default_factory=dict)
    calibration: Calibration | None = None
    reference: Reference | None = None
    created: str = field(default_factory=now)
    adapted: Adaptation | None = None
    #: What the ops ran on; None on creation means the runtime's default backend (the CPU).
    backend: Backend | None = None

    def __post_init__(self) -> None:
        if self.backend is None:
            self.backend = default_backend(self.runtime.name)

    # --- the supernet it describes -----------------------------------------------------------

    @property
    def spec(self) -> FamilySpec:
        return self.supernet.spec

    @property
    def model_format(self) -> str:
        """The model file format the table's runtime runs ("onnx" or "tflite")."""
        return model_format(self.runtime.name)

    @property
    def resolutions(self) -> list[int]:
        return sorted(self.entries)

    # --- prediction ----------------------------------------------------------------------------

    @property
    def has_energy(self) -> bool:
        """Whether every entry carries its energy (a table built on a device with power rails)."""
        entries = [e for section in self.entries.values() for e in section.values()]
        return bool(entries) and all(e.energy_mj is not None for e in entries)

    def op_sum(self, arch: Arch) -> float:
        """Sum of the table's latencies of ``arch``'s ops (ms), uncalibrated."""
        return self._sum_and_count(arch)[0]

    def op_count(self, arch: Arch) -> int:
        """How many of the table's ops ``arch`` runs (the calibration's ``n_ops``)."""
        return len(subnet_ops(self.spec, arch.validate(self.spec.space)))

    def _sum_and_count(self, arch: Arch) -> tuple[float, int]:
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

    def predict(self, arch: Arch, calibrated: bool = True) -> float:
        """Predicted whole-network latency (ms) of ``arch`` on this table's device."""
        total, n_ops = self._sum_and_count(arch)
        if calibrated and self.calibration is not None:
            return apply_calibration(self.calibration, total, n_ops)
        return total

    # --- files -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "supernet": self.supernet.to_dict(),
            "device": self.device.to_dict(),
            "runtime": self.runtime.to_dict(),
            "precision": self.precision,
            "threads": self.threads,
            "backend": self.backend.to_dict() if self.backend else None,
            "created": self.created,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "reference": None if self.reference is None else self.reference.to_dict(),
            "adapted": None if self.adapted is None else self.adapted.to_dict(),
            "entries": {
                str(r): {k: e.to_dict() for k, e in sorted(self.entries[r].items())} for r in self.resolutions
            },
        }

    def save(self, path: str | Path) -> None:
        """Write atomically (a temp file of this writer's own, renamed): a crash never leaves half
        a table, and two writers never mix theirs."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, self.to_dict())

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
            calibration, reference, adapted = (data.get(k) for k in ("calibration", "reference", "adapted"))
            table = cls(
                supernet=SupernetRef.from_dict(data["supernet"]),
                device=DeviceRecord.from_dict(data["device"]),
                runtime=Runtime.from_dict(data["runtime"]),
                precision=data["precision"],
                threads=int(data["threads"]),
                backend=Backend.from_dict(data["backend"]) if "backend" in data else None,
                entries=entries,
                calibration=None if calibration is None else Calibration.from_dict(calibration),
                reference=None if reference is None else Reference.from_dict(reference),
                created=data.get("created", ""),
                adapted=None if adapted is None else Adaptation.from_dict(adapted),
            )
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


def import_ofa(path: str | Path, supernet: SupernetRef, device_name: str = "imported") -> LatencyTable:
    """A table from MIT's YAML: a folder of ``<r>_lookup_table.yaml`` files (OFA-MBv3's, values
    ``{count, mean, std}``), or one file in MIT's legacy ProxylessNAS format (``mobile_trim.yaml``,
    values ``{count, mean, var}``, its resolution that of its ``Conv`` key's input).

    Each entry's ``mean`` becomes its median (MIT publishes no median) and ``count`` its samples;
    the spread (``std``, or ``var``: the square of a std) is checked but not kept: p10/p90 stay
    null, as MIT's timings are not ours to summarize.
    """
    path = Path(path)
    if path.is_file():
        section = _read_ofa_yaml(path)
        convs = {key.split("-")[1] for key in section if key.startswith("Conv-input:")}
        sizes = {int(c.removeprefix("input:").split("x")[0]) for c in convs}
        if len(sizes) != 1:
            raise LutError(f"{path}: expected the first conv (Conv-input:RxRx3-...) at one resolution")
        entries = {sizes.pop(): section}
    else:
        files = sorted(path.glob("*_lookup_table.yaml"), key=lambda p: int(p.name.split("_")[0]))
        if not files:
            raise LutError(f"no <resolution>_lookup_table.yaml files in {path}")
        entries = {int(file.name.split("_")[0]): _read_ofa_yaml(file) for file in files}
    return LatencyTable(
        supernet=supernet,
        device=DeviceRecord(device_name, {"source": str(path)}),
        runtime=Runtime("unknown (imported from OFA)"),
        entries=entries,
    )


def _read_ofa_yaml(file: Path) -> dict[str, Entry]:
    """The entries of one of MIT's YAML tables (``{KEY: {count, mean, std | var}}``)."""
    import yaml

    try:
        data = yaml.load(file.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        section = {}
        for key, value in data.items():
            spread = float(value["std"] if "std" in value else value["var"])
            if not (math.isfinite(spread) and spread >= 0):
                raise ValueError(f"{key}: spread {spread!r} is not a non-negative number")
            section[key] = Entry(
                median_ms=float(value["mean"]), samples=int(value.get("count", 0)), measured="imported"
            )
        return section
    except (yaml.YAMLError, AttributeError, KeyError, TypeError, ValueError) as err:
        raise LutError(f"{file} is not an OFA latency table: {type(err).__name__}: {err}") from None


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
        write_atomic(path, yaml.safe_dump(out, sort_keys=True))
        written.append(path)
    return written


def backend_change(table: LatencyTable, backend: Backend, device: str = "the device") -> str | None:
    """None when ``table`` was measured on ``backend``, else what changed, for people."""
    if table.backend == backend:
        return None
    theirs = table.backend.describe() if table.backend else "?"
    return f"it was measured on {theirs}, {device} now runs {backend.describe()}"


def check_backend(table: LatencyTable, device: DeviceSpec, source: str) -> None:
    """Refuse ``table`` for ``device`` unless the device runs its runtime on the backend the
    table was measured on (another provider, delegate or precision measures another chip)."""
    change = backend_change(table, device.backend_for(table.runtime.name), device.name)
    if change is not None:
        raise LutError(
            f"{source}: {change}",
            hint="build a table for this backend (another --out, or a device entry of its own)",
        )


def table_timing(table: LatencyTable) -> str:
    """How a table's entries were timed against its reference, "interleaved" or "bracketed"
    (tables before the field was added: "bracketed")."""
    return "bracketed" if table.reference is None else table.reference.timing
