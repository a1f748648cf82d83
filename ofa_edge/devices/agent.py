"""The host side of the device agent: deploy it, talk to it, measure models through it.

One ``AgentSession`` per device holds ONE long-lived channel (SSH exec, adb shell or subprocess)
running ``device_agents/ofa_edge_agent.py serve``. The agent file is copied into the device's
workdir only when its sha256 there differs, and verified after the copy. Models are pushed
once per content (named by their sha256). If the agent dies, the call that was running says
which model it was measuring and the next call starts a fresh agent.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import posixpath
import tempfile
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ofa_edge.devices.backend import Placement, refused
from ofa_edge.devices.lock import DeviceLock
from ofa_edge.devices.session import BenchReport, BenchResult, PowerTally, pushed
from ofa_edge.devices.spec import DeviceSpec, model_runtime
from ofa_edge.devices.thermal import cool_down
from ofa_edge.devices.transport import Channel, Transport
from ofa_edge.devices.transports import open_transport
from ofa_edge.errors import AgentError, CommandTimeout, DeviceError, DeviceUnreachable
from ofa_edge.files import sha256_file

PROTOCOL = 1
AGENT_FILE = "ofa_edge_agent.py"
REQUEST_TIMEOUT_S = 120.0
#: A desktop's time for a few hundred check images of a large subnet, with room to spare.
PREDICT_TIMEOUT_S = 300.0


def agent_source() -> Path:
    """The agent file, installed with ofa-edge as the ``device_agents`` package's data."""
    return Path(str(resources.files("device_agents") / AGENT_FILE))


def _agent_result(data: dict[str, Any]) -> BenchResult:
    """A result as the agent reports it (its JSON fields are ``BenchResult``'s)."""
    return BenchResult(
        name=data["name"],
        median_ms=data.get("median_ms"),
        p10_ms=data.get("p10_ms"),
        p90_ms=data.get("p90_ms"),
        mean_ms=data.get("mean_ms"),
        runs=int(data.get("runs", 0)),
        samples_ms=tuple(data.get("samples_ms", ())),
        error=data.get("error"),
        ratio=data.get("ratio"),
        ref_median_ms=data.get("ref_median_ms"),
        placement=Placement.from_dict(data["placement"]) if data.get("placement") else None,
        energy_mj=data.get("energy_mj"),
        power_mw=data.get("power_mw"),
        power_input_mw=data.get("power_input_mw"),
        engine=data.get("engine"),
        end_to_end_ms=data.get("end_to_end_ms"),
    )


class AgentSession:
    """A running agent on one device. Use as a context manager; calls restart a dead agent.
    With a ``lock``, the device's lock is taken before anything else and held until ``close``."""

    def __init__(
        self, spec: DeviceSpec, transport: Transport | None = None, lock: DeviceLock | None = None
    ) -> None:
        self.spec = spec
        #: trtexec times each model in its own process: no interleaving with a reference
        self.interleaves = spec.runtime != "trtexec"
        self.power = PowerTally()
        self.transport = transport or open_transport(spec)
        self.lock = lock
        self._channel: Channel | None = None
        self._ids = itertools.count(1)
        self._workdir: str | None = None
        self.hello: dict[str, Any] = {}
        self.deployed = False  # True when this session copied a new agent file

    # --- setup -------------------------------------------------------------------------------

    @property
    def workdir(self) -> str:
        """The device workdir with ``~`` resolved on the device (quoted paths do not expand it)."""
        if self._workdir is None:
            workdir = self.spec.workdir
            if workdir == "~" or workdir.startswith("~/"):
                home = self.transport.run(["sh", "-c", 'printf %s "$HOME"'], timeout=30).stdout
                workdir = home.rstrip("/") + workdir[1:]
            self._workdir = workdir
        return self._workdir

    @property
    def python(self) -> str:
        return getattr(self.transport, "python", self.spec.python)

    def deploy(self) -> str:
        """Copy the agent into the workdir unless the same file is there; verify its sha256."""
        source = agent_source()
        remote = posixpath.join(self.workdir, AGENT_FILE)
        want = sha256_file(source)
        if self.transport.sha256(remote) != want:
            self.transport.put(source, remote)
            got = self.transport.sha256(remote)
            if got != want:
                raise AgentError(
                    f"{self.spec.name}: the agent copied to {remote} has sha256 {got}, expected {want}",
                    hint="check free space and the workdir's file system on the device",
                )
            self.deployed = True
        return remote

    def start(self) -> dict[str, Any]:
        """Deploy if needed, start the agent, check its protocol; returns its hello."""
        if self._channel is not None:
            return self.hello
        if self.lock is not None:
            self.lock.acquire()
        remote = self.deploy()
        self._channel = self.transport.open_channel([self.python, remote, "serve"], cwd=self.workdir)
        try:
            self.hello = self._exchange({"op": "hello"}, timeout=60)
        except DeviceError:
            self._drop()
            raise
        if self.hello.get("protocol") != PROTOCOL:
            self._drop()
            raise AgentError(
                f"{self.spec.name}: agent speaks protocol {self.hello.get('protocol')}, host {PROTOCOL}",
                hint="reinstall ofa-edge on the host so host and agent match",
            )
        return self.hello

    def _drop(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def close(self) -> None:
        """Stop the agent, drop the link, release the device's lock (also after errors)."""
        try:
            if self._channel is not None:
                with contextlib.suppress(DeviceError):
                    self._channel.write_line(json.dumps({"id": 0, "op": "shutdown"}))
            self._drop()
            self.transport.close()
        finally:
            if self.lock is not None:
                self.lock.release()

    def __enter__(self) -> AgentSession:
        try:
            self.start()
        except BaseException:
            self.close()  # a start that failed (or Ctrl-C) leaves no lock or link behind
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests ------------------------------------------------------------------------------

    def _exchange(
        self,
        request: dict[str, Any],
        timeout: float,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        assert self._channel is not None
        rid = next(self._ids)
        self._channel.write_line(json.dumps({"id": rid, **request}))
        while True:
            line = self._channel.read_line(self.spec.wait(timeout))
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # not protocol (e.g. a login banner): ignore
            if not isinstance(msg, dict) or msg.get("id") != rid:
                continue
            if "event" in msg:
                if on_event is not None:
                    on_event(msg)
                continue
            if msg.get("ok"):
                return msg.get("result", {})
            error = msg.get("error", {})
            if error.get("type") == "PlacementRefused":
                what = json.loads(error["message"])
                raise refused(self.spec.name, what["model"], Placement.from_dict(what["placement"]))
            raise AgentError(
                f"{self.spec.name}: agent {request['op']} failed: "
                f"{error.get('type', 'Error')}: {error.get('message', '')}"
            )

    def request(
        self,
        op: str,
        timeout: float = REQUEST_TIMEOUT_S,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Send one request (starting the agent if needed) and wait for its reply."""
        self.start()
        try:
            return self._exchange({"op": op, **fields}, timeout, on_event)
        except (DeviceUnreachable, CommandTimeout):
            self._drop()  # the next request starts a fresh agent
            raise

    def fingerprint(self) -> dict[str, Any]:
        return self.request("fingerprint", timeout=60)

    def push_model(self, local: Path) -> str:
        """Copy a model (or an input batch) into the workdir's models/, named by content and
        skipped if present."""
        digest = sha256_file(local)
        remote = posixpath.join(self.workdir, "models", f"{digest[:16]}{local.suffix}")
        if self.transport.sha256(remote) != digest:
            self.transport.put(local, remote)
            if self.transport.sha256(remote) != digest:
                raise AgentError(f"{self.spec.name}: {local.name} arrived corrupted at {remote}")
        return remote

    def predict(self, model: Path, x: np.ndarray, *, runtime: str | None = None) -> np.ndarray:
        """``model``'s outputs on the device for the float batch ``x`` (in the model's layout), by
        the agent's ``predict``, the function the host's export checks run too."""
        remote = self.push_model(model)
        with tempfile.TemporaryDirectory(prefix="ofa-edge-predict-") as tmp:
            inputs = Path(tmp) / "inputs.npy"
            np.save(inputs, np.ascontiguousarray(x, dtype=np.float32))
            reply = self.request(
                "predict",
                timeout=PREDICT_TIMEOUT_S,
                model=remote,
                inputs=self.push_model(inputs),
                runtime=runtime or model_runtime(model),
                threads=self.spec.threads,
            )
            self.transport.get(reply["outputs"], Path(tmp) / "outputs.npy")
            return np.load(Path(tmp) / "outputs.npy")

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
        """Push and measure models on the device's backend for ``runtime``; ``on_result`` sees
        each as soon as it is measured. With a ``reference`` model, each is timed interleaved
        with it and reports its ``ratio``. A model not wholly on the backend's accelerator raises
        ``PlacementError`` unless the backend allows partial placement. An Android device is
        first given a bounded time to cool down (``ofa_edge.devices.thermal``)."""
        remotes = pushed(self, [*models, *([reference] if reference else [])])
        entries = [{"name": Path(p).name, "path": remote} for p, remote in zip(models, remotes)]
        current: list[str] = [entries[0]["name"]] if entries else []

        def event(msg: dict[str, Any]) -> None:
            result = _agent_result(msg["result"])
            done = [e["name"] for e in entries].index(result.name)
            if done + 1 < len(entries):
                current[:] = [entries[done + 1]["name"]]
            if on_result is not None:
                on_result(result)

        runtime = runtime or self.spec.runtime
        cooled = cool_down(self.spec, lambda: self.request("conditions").get("android_thermal"))
        try:
            reply = self.request(
                "bench",
                timeout=model_timeout + 60,
                on_event=event,
                models=entries,
                runtime=runtime,
                backend=self.spec.backend_for(runtime).request(),
                threads=threads or self.spec.threads,
                warmup=warmup,
                min_runs=min_runs,
                min_seconds=min_seconds,
                model_timeout=self.spec.wait(model_timeout),
                cpus=list(self.spec.cpus) if self.spec.cpus else None,
                reference=remotes[-1] if reference else None,
                precision=self.spec.backend_for(runtime).precision,
            )
        except (DeviceUnreachable, CommandTimeout) as err:
            model = current[0] if current else "?"
            raise AgentError(
                f"{self.spec.name}: the agent stopped while measuring {model}: {err.message}",
                hint="measurements already reported are kept; the next call starts a new agent",
                model=model,
            ) from None
        before = reply.get("conditions_before", {})
        results = [_agent_result(r) for r in reply["results"]]
        for result in results:
            self.power.add(result)
        return BenchReport(
            results,
            {**before, "cool_down": cooled} if cooled else before,
            reply.get("conditions_after", {}),
        )

    def cleanup(self) -> None:
        """Remove pushed models from the device."""
        self.request("cleanup", path=posixpath.join(self.workdir, "models"))
