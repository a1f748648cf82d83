"""The whole job for one device: agent check → latency table → search → export → push → verify.

A table already in the output folder is reused while it still describes the device (same CPU,
cores, architecture, runtime version) and is calibrated; a stale one is kept aside, never
overwritten. At the end the run states what it cost: device-seconds (wall time the device spent
measuring), host CPU-seconds, and their energy: the device's from the power its rails measured
during the run's timed inferences where it has them (a Jetson's INA3221), else estimated, as the
host's is, from the documented power assumptions; the summary says which.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ofa_edge.accuracy.predictor import predictor_for
from ofa_edge.deploy.push import Deployment, push
from ofa_edge.devices.backend import Backend
from ofa_edge.devices.session import runtime_version
from ofa_edge.devices.sessions import open_session
from ofa_edge.devices.spec import DeviceSpec, model_format
from ofa_edge.errors import ConfigError
from ofa_edge.export.check import ExportReport, export_subnet
from ofa_edge.export.images import default_calibration, load_images
from ofa_edge.files import write_json
from ofa_edge.lut.build import build_table
from ofa_edge.lut.store import table_file_name
from ofa_edge.lut.table import PASSES, LatencyTable, SupernetRef, backend_change, table_timing
from ofa_edge.lut.validate import ValidationReport, validate
from ofa_edge.measure.timing import timing_of
from ofa_edge.search import SubnetSearch
from ofa_edge.search.costs import CostKey
from ofa_edge.search.evolution import Candidate
from ofa_edge.search.pareto import write_pareto
from ofa_edge.supernet.registry import get_supernet_info, load_supernet

#: Energy assumptions (W): a busy x86 host core, and a small board (Pi / Jetson / phone) under
#: load. Rough figures for an order of magnitude; override with ``host_watts`` / ``device_watts``.
HOST_WATTS_PER_CORE = 15.0
DEVICE_WATTS = 5.0
#: Fingerprint fields that must be unchanged for a table to be reused.
TABLE_IDENTITY = ("arch", "cpu_model", "cores", "board", "jetson")

Stage = Callable[[str, str], None]  # (stage name, message)
Progress = Callable[[str], Callable[[int, int], None]]  # stage -> progress(done, total)


@dataclass
class Ledger:
    """Device wall time and host CPU time spent, per stage."""

    device_s: dict[str, float] = field(default_factory=dict)
    host_cpu_s: dict[str, float] = field(default_factory=dict)

    def timed(self, stage: str, on_device: bool, work: Callable[[], Any]) -> Any:
        cpu0, wall0 = _cpu_seconds(), time.perf_counter()
        try:
            return work()
        finally:
            self.host_cpu_s[stage] = self.host_cpu_s.get(stage, 0.0) + _cpu_seconds() - cpu0
            if on_device:
                self.device_s[stage] = self.device_s.get(stage, 0.0) + time.perf_counter() - wall0


@dataclass(frozen=True)
class RunCost:
    """What a run cost: device wall time and host CPU time per stage, and the energy they take
    at ``host_watts_per_core`` and the device's power: ``measured_device_watts`` where its rails
    measured it, else the ``device_watts`` assumption (0 for the local machine: its measuring is
    host CPU time, counted once)."""

    ledger: Ledger
    host_watts_per_core: float
    device_watts: float
    measured_device_watts: float | None = None

    @property
    def device_power_w(self) -> float:
        """The device power the energy uses: measured where it was, else the assumption."""
        return self.device_watts if self.measured_device_watts is None else self.measured_device_watts

    @property
    def device_seconds(self) -> float:
        return sum(self.ledger.device_s.values())

    @property
    def host_cpu_seconds(self) -> float:
        return sum(self.ledger.host_cpu_s.values())

    @property
    def energy_wh(self) -> float:
        joules = self.host_cpu_seconds * self.host_watts_per_core + self.device_seconds * self.device_power_w
        return joules / 3600

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_seconds": self.device_seconds,
            "host_cpu_seconds": self.host_cpu_seconds,
            "per_stage": {"device_s": self.ledger.device_s, "host_cpu_s": self.ledger.host_cpu_s},
            "energy_wh": self.energy_wh,
            "device_power": {
                "watts": self.device_power_w,
                "source": "estimate: the device_watts assumption"
                if self.measured_device_watts is None
                else "measured: the device's power rails during its timed runs, times its device-seconds",
            },
            "assumptions": {
                "host_watts_per_busy_core": self.host_watts_per_core,
                "device_watts": self.device_watts,
                "note": "local device: its measuring is host CPU time, counted once",
            },
        }


@dataclass(frozen=True)
class SearchChoice:
    """The subnet chosen: its latency budget within the reachable range, and the search's pick."""

    budget_ms: float
    reachable_ms: tuple[float, float]
    best: Candidate
    seconds: float  # the chosen budget's search
    objective: str = "accuracy"  # what the search maximized: predicted top-1, or MACs

    @property
    def score_text(self) -> str:
        """The pick's score for people: its predicted top-1, or its MACs."""
        if self.objective == "accuracy":
            return f"predicted top-1 {self.best.score:.4g}"
        return f"{self.best.score / 1e6:.2f}M MACs (the most under the budget; no accuracy predicted)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget_ms": self.budget_ms,
            "reachable_ms": list(self.reachable_ms),
            "arch": self.best.arch.to_dict(),
            "objective": self.objective,
            "predicted_top1": self.best.score if self.objective == "accuracy" else None,
            "costs": self.best.labelled_costs(),
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class Specialization:
    """One specialize run: the table used (and its calibration's fidelity when it was measured
    now), the subnet chosen, its export and deployment, and what the run cost."""

    device: str
    supernet: str
    format: str
    precision: str
    table_path: Path
    table_reused: bool
    fidelity: ValidationReport | None  # None: a calibrated table was reused
    choice: SearchChoice
    export: ExportReport
    deployment: Deployment
    cost: RunCost
    summary_file: Path

    def summary_dict(self) -> dict[str, Any]:
        """The summary file's document (``specialize.json``)."""
        doc: dict[str, Any] = {
            "device": self.device,
            "supernet": self.supernet,
            "format": self.format,
            "precision": self.precision,
        }
        if self.fidelity is not None:
            report = self.fidelity.to_dict()
            doc["table_fidelity"] = {k: report[k] for k in ("calibration", "uncalibrated", "calibrated")}
        return doc | {
            "table": {"path": str(self.table_path), "reused": self.table_reused},
            "search": self.choice.to_dict(),
            "export": self.export.to_dict(),
            "deployment": self.deployment.to_dict(),
            "cost": self.cost.to_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        """The summary and where it is (``specialize --json``)."""
        return {**self.summary_dict(), "summary_file": str(self.summary_file)}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (a local agent runs as a child)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def stale_reasons(
    table: LatencyTable,
    fingerprint: dict[str, Any],
    runtime_version: str | None,
    timing: str,
    backend: Backend | None = None,
) -> list[str]:
    """Why ``table`` no longer describes the device with ``fingerprint``, whose session times
    models ``timing`` against the reference and runs them on ``backend`` (None: not compared);
    empty: reusable."""
    then = table.device.fingerprint
    reasons = [
        f"{key} was {then.get(key)!r}, now {fingerprint.get(key)!r}"
        for key in TABLE_IDENTITY
        if then.get(key) != fingerprint.get(key)
    ]
    if table.runtime.version != runtime_version:
        reasons.append(f"runtime version was {table.runtime.version}, now {runtime_version}")
    change = None if backend is None else backend_change(table, backend)
    if change is not None:
        reasons.append(change)
    if table.reference is None:
        reasons.append("the table has no reference timing (older format)")
    elif table_timing(table) != timing:
        reasons.append(
            f"it was timed {table_timing(table)} with its reference, the device now times {timing}"
        )
    return reasons


def specialize(
    device: DeviceSpec,
    out_dir: Path,
    *,
    supernet: str,
    latency_ms: float | None = None,
    fmt: str = "onnx",
    precision: str = "fp32",
    resolutions: list[int] | None = None,
    checkpoint: Path | None = None,
    predictor: Path | None = None,
    objective: str = "accuracy",
    calib: Path | None = None,
    validate_samples: int = 30,
    passes: int = PASSES,
    generations: int = 500,
    seed: int = 0,
    host_watts_per_core: float = HOST_WATTS_PER_CORE,
    device_watts: float = DEVICE_WATTS,
    stage: Stage = lambda name, message: None,
    progress: Progress = lambda name: lambda done, total: None,
) -> Specialization:
    """Specialize ``supernet`` for ``device`` under ``latency_ms`` (default: the middle of the
    reachable range) and return the run (its summary also written to ``out_dir/specialize.json``).
    ``objective`` "macs" picks the subnet with the most MACs under the budget, for supernets
    without an accuracy predictor."""
    if fmt not in ("onnx", "tflite"):
        raise ConfigError(f"unknown format {fmt!r}", hint="use onnx or tflite")
    if model_format(device.runtime) != fmt:
        raise ConfigError(
            f"device {device.name!r} runs {device.runtime}, which cannot run {fmt} models",
            hint=f"use --format {model_format(device.runtime)}",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = get_supernet_info(supernet).spec
    resolutions = resolutions or list(spec.space.resolutions)
    ledger = Ledger()
    fidelity: ValidationReport | None = None
    with open_session(device) as session:
        stage("device", f"connecting to {device.name}")
        fingerprint = ledger.timed("device", True, session.fingerprint)
        stage(
            "device", f"{fingerprint.get('cpu_model')} x{fingerprint.get('cores')}, {fingerprint.get('os')}"
        )

        table_path = out_dir / table_file_name(device.name, supernet, precision, device.threads)
        table = LatencyTable.load(table_path) if table_path.is_file() else None
        if table is not None:
            version = runtime_version(fingerprint, device.runtime)
            backend = device.backend_for(device.runtime)
            reasons = stale_reasons(table, fingerprint, version, timing_of(session), backend)
            if set(table.resolutions) < set(resolutions):
                reasons.append(f"resolutions {table.resolutions} lack some of {resolutions}")
            if reasons:
                aside = table_path.with_name(f"{table_path.stem}.stale-{int(time.time())}.json")
                table_path.rename(aside)
                stage("table", f"existing table kept aside as {aside.name}: {'; '.join(reasons)}")
                table = None
        reused = table is not None and table.calibration is not None
        if not reused:
            stage("table", f"measuring every op at {resolutions} px ({precision}) on {device.name}")
            ledger.timed(
                "table",
                True,
                lambda: build_table(
                    session,
                    SupernetRef.named(supernet),
                    resolutions,
                    table_path,
                    precision=precision,
                    threads=device.threads,
                    passes=passes,
                    progress=progress("table"),
                    exporting=progress("export"),
                ),
            )
            stage("table", f"calibrating on {validate_samples} subnets measured whole")
            fidelity = ledger.timed(
                "calibrate",
                True,
                lambda: validate(
                    session,
                    table_path,
                    samples=validate_samples,
                    seed=seed,
                    plot=out_dir / "latency_fit.png",
                    rounds=2,
                    progress=progress("calibrate"),
                ),
            )
        else:
            stage("table", f"reusing {table_path.name} (same device and runtime, calibrated)")
        table = LatencyTable.load(table_path)

        def search() -> SearchChoice:
            model = predictor_for(supernet, spec.space, predictor) if objective == "accuracy" else None
            searcher = SubnetSearch(
                supernet, spec, {device.name: table}, model, objective=objective, generations=generations
            )
            low, high = searcher.latency_range(device.name)
            sweep = [low + (high - low) * q for q in (0.1, 0.3, 0.5, 0.7, 0.9)]
            budget = latency_ms if latency_ms is not None else sweep[2]  # the middle of the range
            stage("search", f"reachable {low:.2f}-{high:.2f} ms; budget {budget:.2f} ms")
            # The budget is one point of the plotted sweep, so the chosen subnet is on the front.
            budgets = sorted({budget, *sweep})
            points = searcher.pareto(device.name, budgets, seed=seed)
            write_pareto(
                points, device.name, out_dir / "pareto", "accuracy" if objective == "accuracy" else "MACs"
            )
            chosen = points[budgets.index(budget)]
            if chosen.outcome is None:
                assert chosen.infeasible is not None
                raise chosen.infeasible
            return SearchChoice(budget, (low, high), chosen.outcome.best, chosen.outcome.seconds, objective)

        choice = ledger.timed("search", False, search)
        best = choice.best
        best.arch.save(out_dir / "subnet.json")
        costs = best.costs
        stage(
            "search",
            f"{choice.score_text} at r={best.arch.r}: "
            f"{costs[CostKey('latency', device.name)]:.3f} ms predicted on {device.name}, "
            f"{costs[CostKey('macs')] / 1e6:.2f}M MACs, {costs[CostKey('params')] / 1e6:.2f}M params",
        )

        def export() -> Any:
            net = load_supernet(supernet, checkpoint=checkpoint)
            images, _ = load_images(calib or default_calibration(), 256, "train", best.arch.r)
            return export_subnet(net, supernet, best.arch, fmt, precision, images, out_dir / f"subnet.{fmt}")

        stage("export", f"extracting, recalibrating BN and exporting {fmt} {precision}")
        exported = ledger.timed("export", False, export)
        stage("push", f"pushing {Path(exported.path).name} to {device.name} and measuring it there")
        model = Path(exported.path)
        deployment = ledger.timed(
            "push",
            True,
            lambda: push(session, model, table=table, table_path=table_path, record=exported.to_dict()),
        )
        power = session.power
    local = device.transport == "local"
    run = Specialization(
        device=device.name,
        supernet=supernet,
        format=fmt,
        precision=precision,
        table_path=table_path,
        table_reused=reused,
        fidelity=fidelity,
        choice=choice,
        export=exported,
        deployment=deployment,
        cost=RunCost(
            ledger, host_watts_per_core, 0.0 if local else device_watts, None if local else power.watts
        ),
        summary_file=out_dir / "specialize.json",
    )
    summary = run.summary_dict()
    write_json(out_dir / "specialize.json", summary)
    return run
