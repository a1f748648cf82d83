"""Phones without Python: TFLite's own ``benchmark_model`` binary, pushed and driven over adb.

Used for ADB devices whose inventory names a local ``benchmark_model``. It offers the agent
session's calls (``start``, ``fingerprint``, ``bench``, ``close``) so the rest of ofa-edge does
not care which one measures. The binary is pushed once per content and its sha256 recorded in
the session's hello; each model runs as one ``benchmark_model`` process with a timeout, and its
output (stdout and stderr together) is parsed tolerantly. Builds that print no percentiles
(TensorFlow before LiteRT) give no median: their mean stands in, and the result says so
(``median_is_mean``).
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from device_agents.ofa_edge_agent import identify, parse_getprop, parse_thermalservice
from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.backend import refused
from ofa_edge.devices.benchmark_model import (
    BenchmarkOutputError,
    benchmark_model_argv,
    parse_benchmark_model,
    parse_placement,
)
from ofa_edge.devices.lock import DeviceLock
from ofa_edge.devices.session import BenchReport, BenchResult, PowerTally, pushed
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.devices.thermal import cool_down
from ofa_edge.devices.transport import Transport
from ofa_edge.devices.transports import open_transport
from ofa_edge.errors import AgentError, ConfigError, DeviceError
from ofa_edge.files import sha256_file


class BenchmarkModelSession:
    """Measure TFLite models on a phone with ``benchmark_model`` (no agent, no Python)."""

    interleaves = False  # one model per run of the tool: a reference is timed in its own slots

    def __init__(
        self, spec: DeviceSpec, transport: Transport | None = None, lock: DeviceLock | None = None
    ) -> None:
        if spec.adb is None or spec.adb.benchmark_model is None:
            raise ConfigError(f"device {spec.name!r}: benchmark_model is not set in the inventory")
        self.spec, self.binary = spec, spec.adb.benchmark_model
        self.transport = transport or open_transport(spec)
        self.lock = lock  # taken by start, released by close, as the agent session does
        self.power = PowerTally()  # a phone's power is not read: stays empty
        self._files = AgentSession(spec, self.transport)  # for workdir and content-named pushes
        self.hello: dict[str, Any] = {}
        self.deployed = False

    @property
    def workdir(self) -> str:
        return self._files.workdir

    def push_model(self, local: Path) -> str:
        """Copy a model to the phone (named by content, sha256 checked), as the agent does."""
        return self._files.push_model(local)

    def predict(self, model: Path, x: np.ndarray) -> None:
        """None: ``benchmark_model`` runs random inputs only, so outputs cannot be compared."""
        return None

    def start(self) -> dict[str, Any]:
        """Push the binary if the phone's copy differs; returns its path and sha256."""
        if self.hello:
            return self.hello
        if self.lock is not None:
            self.lock.acquire()
        if not self.binary.is_file():
            raise ConfigError(
                f"device {self.spec.name!r}: benchmark_model {self.binary} does not exist",
                hint="build or download TFLite's benchmark_model for the phone's ABI and set its path",
            )
        digest = sha256_file(self.binary)
        remote = posixpath.join(self.workdir, "benchmark_model")
        if self.transport.sha256(remote) != digest:
            self.transport.put(self.binary, remote)
            if self.transport.sha256(remote) != digest:
                raise AgentError(f"{self.spec.name}: benchmark_model arrived corrupted at {remote}")
            self.deployed = True
        self.transport.run(["chmod", "755", remote], timeout=30)
        self.hello = {"protocol": "benchmark_model", "binary": remote, "sha256": digest}
        return self.hello

    def fingerprint(self) -> dict[str, Any]:
        """What the phone's shell tells without Python: properties, ABI, cores, clocks; the CPU,
        board and SoC decoded by the agent's own ``identify`` (the same names as with the agent)."""
        self.start()

        def sh(argv: list[str]) -> str:
            res = self.transport.run(argv, check=False, timeout=30)
            return res.stdout.strip() if res.ok else ""

        props = parse_getprop(sh(["getprop"]))
        device = identify(sh(["cat", "/proc/cpuinfo"]), android=props)
        freqs = sh(["sh", "-c", "cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq"]).split()
        arch = sh(["uname", "-m"])
        return {
            "os": f"Android {props.get('ro.build.version.release', '')}".strip(),
            **device,
            "cpu_model": device["cpu_model"] or arch,
            "arch": arch,
            "cores": int(sh(["nproc"]) or 0) or None,
            "online_cpus": sh(["cat", "/sys/devices/system/cpu/online"]) or None,
            "cpu_mhz": [int(f) // 1000 for f in freqs if f.isdigit()],
            "runtimes": {"benchmark_model": {"sha256": self.hello["sha256"]}},
            "agent_dir": self.workdir,
            "conditions": self.conditions(),
        }

    def conditions(self) -> dict[str, Any]:
        """What the shell tells of the phone's state: Android's thermal status and temperatures."""
        res = self.transport.run(["dumpsys", "thermalservice"], check=False, timeout=30)
        return {"time": time.time(), "android_thermal": parse_thermalservice(res.stdout) if res.ok else None}

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
    ) -> BenchReport:
        """Run ``benchmark_model`` once per model on the device's TFLite backend, after a bounded
        wait for the phone to cool down (``ofa_edge.devices.thermal``); a failing model is
        reported, not fatal; one not wholly on the accelerator delegate raises
        ``PlacementError`` unless the backend allows partial placement."""
        if reference is not None:
            raise ConfigError(f"{self.spec.name}: benchmark_model cannot time models interleaved")
        if runtime not in (None, "tflite"):
            raise ConfigError(f"{self.spec.name}: benchmark_model measures TFLite models, not {runtime}")
        start = self.start()
        cooled = cool_down(self.spec, lambda: self.conditions()["android_thermal"])
        before = {**self.conditions(), **({"cool_down": cooled} if cooled else {})}
        tflite = [Path(p) for p in models if Path(p).suffix == ".tflite"]
        graph_of = dict(zip((p.name for p in tflite), pushed(self, tflite)))
        results = []
        for path in models:
            path = Path(path)
            if path.suffix != ".tflite":
                result = BenchResult(path.name, error="benchmark_model needs a .tflite model")
            else:
                result = self._one(
                    start["binary"],
                    path.name,
                    graph_of[path.name],
                    threads or self.spec.threads,
                    warmup,
                    min_runs,
                    min_seconds,
                    model_timeout,
                )
            results.append(result)
            if on_result is not None:
                on_result(result)
        return BenchReport(results, before, self.conditions())

    def _one(
        self,
        binary: str,
        name: str,
        graph: str,
        threads: int,
        warmup: int,
        runs: int,
        min_secs: float,
        timeout: float,
    ) -> BenchResult:
        backend = self.spec.backend_for("tflite")
        argv = benchmark_model_argv(binary, graph, threads, runs, warmup, min_secs, backend, self.spec.cpus)
        try:
            res = self.transport.run(argv, timeout=timeout, check=False)
        except DeviceError as err:
            return BenchResult(name, error=err.message)
        text = res.stdout + "\n" + res.stderr
        try:
            parsed = parse_benchmark_model(text)
        except BenchmarkOutputError as err:
            return BenchResult(name, error=f"exit {res.exit_code}: {err.message}")
        placement = parse_placement(text, backend.delegate) if backend.target and backend.delegate else None
        if placement is not None and not placement.whole and not backend.allow_partial:
            raise refused(self.spec.name, name, placement)
        pct = parsed.percentiles_ms
        return BenchResult(
            name,
            median_ms=parsed.avg_ms if parsed.median_ms is None else parsed.median_ms,
            p10_ms=pct.get("p10"),
            p90_ms=pct.get("p90"),
            mean_ms=parsed.avg_ms,
            runs=parsed.count,
            median_is_mean=parsed.median_ms is None,
            placement=placement,
        )

    def close(self) -> None:
        try:
            self.transport.close()
        finally:
            if self.lock is not None:
                self.lock.release()

    def __enter__(self) -> BenchmarkModelSession:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
