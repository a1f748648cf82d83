"""What ofa-edge knows of one device: how to reach it and how to run models there.

``DeviceSpec`` is what the inventory (``ofa_edge.devices.inventory``) reads a device's table
into, and what transports and sessions take; this module depends on nothing else of ofa-edge but
the backends (``ofa_edge.devices.backend``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ofa_edge.devices.backend import Backend, default_backend
from ofa_edge.errors import ConfigError

#: The model file format each runtime runs: the one map between runtimes and formats. trtexec
#: (TensorRT's own tool, for Jetsons without onnxruntime-gpu) builds its engines from ONNX on the
#: device; onnxruntime comes first, so .onnx files run there unless a device names trtexec.
FORMAT_OF_RUNTIME = {"onnxruntime": "onnx", "tflite": "tflite", "trtexec": "onnx"}
RUNTIMES = tuple(FORMAT_OF_RUNTIME)
#: The precisions models run in on a device: fp32 as converted, fp16 weights, static int8.
PRECISIONS = ("fp32", "fp16", "int8")


def model_format(runtime: str) -> str:
    """The model file format (``onnx`` or ``tflite``) that ``runtime`` runs; ONNX for a runtime
    this package does not drive (e.g. a table imported from MIT's files)."""
    return FORMAT_OF_RUNTIME.get(runtime, "onnx")


def model_runtime(model: Path) -> str:
    """The runtime that runs a model file, by its suffix (``.onnx`` or ``.tflite``)."""
    for runtime, fmt in FORMAT_OF_RUNTIME.items():
        if model.suffix == f".{fmt}":
            return runtime
    raise ConfigError(f"{model}: unknown model format", hint="use a .onnx or .tflite file")


def device_runtime(device: DeviceSpec, model: Path) -> str:
    """The runtime ``device`` runs ``model`` with: its own when it takes the model's format (a
    Jetson's trtexec for .onnx), else the one the file's suffix names."""
    runtime = model_runtime(model)
    return device.runtime if model_format(device.runtime) == FORMAT_OF_RUNTIME[runtime] else runtime


@dataclass(frozen=True)
class SshOptions:
    host: str
    port: int = 22
    user: str | None = None
    key: Path | None = None  # None: keys from the SSH agent / default identities
    known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())
    connect_timeout: float = 10.0
    #: Jump hosts to go through (OpenSSH's ProxyJump), first hop first; each is checked and
    #: logged in to like the device, with its own key and known_hosts.
    jump: tuple[SshOptions, ...] = ()


@dataclass(frozen=True)
class AdbOptions:
    serial: str | None = None
    adb: str = "adb"
    server_port: int | None = None  # a private adb server (ANDROID_ADB_SERVER_PORT), or server_host's
    server_host: str | None = None  # an adb server on another machine (`adb -H HOST -P PORT`)
    benchmark_model: Path | None = None  # TFLite's benchmark_model, for phones without Python


@dataclass(frozen=True)
class DeviceSpec:
    """One device of the fleet and how to reach and use it."""

    name: str
    transport: str = "local"
    runtime: str = "onnxruntime"
    threads: int = 1
    workdir: str = "~/.cache/ofa-edge-agent"
    python: str = "python3"
    cpus: tuple[int, ...] | None = None
    description: str = ""
    ssh: SshOptions | None = None
    adb: AdbOptions | None = None
    #: How many times longer than a desktop this device takes for the same work (an emulated
    #: board: 20): every wait of the host for the device is ``wait(seconds)``.
    slowdown: float = 1.0
    #: Desktop seconds a measuring command waits for another one's lock on the device before
    #: ``DeviceBusy`` (``ofa_edge.devices.lock``); scaled like every wait: ``wait(lock_timeout)``.
    lock_timeout: float = 300.0
    #: Inventory groups the device belongs to (``--group NAME`` selects them; Ansible's groups).
    groups: tuple[str, ...] = ()
    #: Android: before each batch, wait at most ``cool_down_s`` seconds (0: never) until the
    #: thermal status is at most ``thermal_limit`` (0 none, 1 light, 2 moderate ... 6 shutdown),
    #: ``ofa_edge.devices.thermal``; physical time, not scaled by ``slowdown``.
    thermal_limit: int = 1
    cool_down_s: float = 120.0
    #: What models run on (providers, delegate, precision); None: the runtime's default, the CPU.
    backend: Backend | None = None

    def backend_for(self, runtime: str | None = None) -> Backend:
        """The backend a model of ``runtime`` (default: the device's) runs on here: the
        inventory's when it is for that runtime, else that runtime's default (the CPU)."""
        runtime = runtime or self.runtime
        if self.backend is not None and self.backend.runtime == runtime:
            return self.backend
        return default_backend(runtime)

    def wait(self, seconds: float) -> float:
        """How long to wait for work a desktop does in ``seconds``: ``seconds * slowdown``."""
        return seconds * self.slowdown


def local_workdir() -> str:
    """The agent's folder on this machine: ``$OFA_EDGE_AGENT_DIR`` (tests isolate it), else the
    default ``~/.cache/ofa-edge-agent``."""
    return os.environ.get("OFA_EDGE_AGENT_DIR") or DeviceSpec.workdir


def local_device() -> DeviceSpec:
    return DeviceSpec(name="local", description="this machine", workdir=local_workdir())
