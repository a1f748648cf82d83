"""The session contract: what every measuring session on a device offers, and what it returns.

The Python agent (``ofa_edge.devices.agent.AgentSession``) and TFLite's ``benchmark_model`` on
phones without Python (``ofa_edge.devices.android.BenchmarkModelSession``) both follow
:class:`MeasuringSession`, so measuring, building tables and deploying do not care which one a
device has; ``ofa_edge.devices.sessions.open_session`` picks it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ofa_edge.devices.backend import Placement
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.devices.transport import Transport


@dataclass(frozen=True)
class BenchResult:
    """One model's measurement on a device (``error`` set when it crashed or timed out)."""

    name: str
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    mean_ms: float | None = None
    runs: int = 0
    samples_ms: tuple[float, ...] = ()
    error: str | None = None
    ratio: float | None = None  # timed against a reference: model / reference, interleaved
    ref_median_ms: float | None = None  # the reference's median during this model's timing
    median_is_mean: bool = False  # a tool without percentiles: median_ms holds its mean instead
    placement: Placement | None = None  # where its nodes ran, on a backend with an accelerator
    #: Energy per inference (mJ) from the device's power rails during the timed runs, with each
    #: rail's mean power (mW); None where the device exposes no rails.
    energy_mj: float | None = None
    power_mw: dict[str, float] | None = None
    power_input_mw: float | None = None  # the module's input rail, or the rails' sum
    #: trtexec: the engine (file, tensorrt, precision, cached, build_s: build seconds apart from
    #: inference) and the end-to-end latency stats with host-device copies (median_ms is the
    #: model-only GPU compute time).
    engine: dict[str, Any] | None = None
    end_to_end_ms: dict[str, float] | None = None


@dataclass
class BenchReport:
    """One ``bench`` call's results, with the device's conditions (clocks, throttling) before and
    after, so a caller can tell a batch measured while the device changed speed."""

    results: list[BenchResult]
    conditions_before: dict[str, Any] = field(default_factory=dict)
    conditions_after: dict[str, Any] = field(default_factory=dict)


@dataclass
class PowerTally:
    """The device's power as its rails measured it over a session's timed runs: every result's
    mean input power, weighted by the time its runs took."""

    joules: float = 0.0
    seconds: float = 0.0

    def add(self, result: BenchResult) -> None:
        if result.energy_mj and result.power_input_mw:
            millijoules = result.energy_mj * result.runs
            self.joules += millijoules / 1000
            self.seconds += millijoules / result.power_input_mw

    @property
    def watts(self) -> float | None:
        """The mean power (W), or None where nothing was measured (no rails)."""
        return self.joules / self.seconds if self.seconds else None


def pushed(session: MeasuringSession, models: Sequence[Path]) -> list[str]:
    """Each model's path on the device, pushing each file once: a bracketed reference model is
    listed many times per batch as hard links of one file."""
    remote: dict[tuple[int, int], str] = {}
    out = []
    for p in models:
        st = Path(p).stat()
        key = (st.st_dev, st.st_ino)
        if key not in remote:
            remote[key] = session.push_model(Path(p))
        out.append(remote[key])
    return out


class MeasuringSession(Protocol):
    """What the rest of ofa-edge needs of a device: the Python agent and phones without Python
    (``BenchmarkModelSession``) both provide it."""

    spec: DeviceSpec
    #: How the session reaches the device (also for reads beside the session's own calls).
    transport: Transport
    #: Whether ``bench(..., reference=)`` times each model interleaved with the reference (the
    #: agent); otherwise the reference is timed as a model of its own between the others.
    interleaves: bool
    #: Whether opening this session copied a new agent (or tool) onto the device.
    deployed: bool
    #: The device's measured power over this session's timed runs (where it has power rails).
    power: PowerTally

    def fingerprint(self) -> dict[str, Any]: ...

    def push_model(self, local: Path) -> str: ...

    def predict(self, model: Path, x: np.ndarray) -> np.ndarray | None:
        """``model``'s outputs on the device for the float batch ``x`` (in the model's layout),
        or None where the session cannot feed given inputs (``benchmark_model``)."""
        ...

    def bench(
        self,
        models: Sequence[Path],
        *,
        runtime: str | None = None,
        threads: int | None = None,
        warmup: int = 5,
        min_runs: int = 20,
        min_seconds: float = 0.5,
        model_timeout: float = 60.0,
        reference: Path | None = None,
        on_result: Callable[[BenchResult], None] | None = None,
    ) -> BenchReport: ...

    def __enter__(self) -> MeasuringSession: ...

    def __exit__(self, *exc: object) -> None: ...


def runtime_version(fingerprint: dict[str, Any], runtime: str) -> str | None:
    """The version of ``runtime`` ("onnxruntime" or "tflite") in an agent fingerprint."""
    found = fingerprint.get("runtimes", {})
    names = ("ai_edge_litert", "tflite_runtime", "tflite") if runtime == "tflite" else (runtime,)
    for name in names:
        if (found.get(name) or {}).get("version"):
            return found[name]["version"]
    return None
