"""A Ray farm: each device's work runs as a Ray task on the node that owns the device.

Every host of the farm runs a Ray node that advertises the devices it reaches as custom
resources ``device:NAME`` of capacity 1 (``ray start --address=HEAD:6379
--resources='{"device:NAME": 1}'``), so a device runs one task at a time, on its own host. The
machine running ``ofa-edge`` needs only the inventory and the Ray address (``--ray ADDRESS`` or
``$OFA_EDGE_RAY_ADDRESS``). Ray is an optional extra (``pip install 'ofa-edge[ray]'``), and the
farm refuses to run without Ray's token authentication (``RAY_AUTH_MODE=token``). The device
agent's RPC knows nothing of Ray: a node drives its devices as a lone host would.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.errors import ConfigError, DeviceUnreachable, OfaEdgeError

#: The Ray address device commands use when ``--ray`` is not given.
RAY_ADDRESS_ENV = "OFA_EDGE_RAY_ADDRESS"
T = TypeVar("T")
#: ``status(device_name, message)`` as each device moves on.
Status = Callable[[str, str], None]


@dataclass(frozen=True)
class Attempt(Generic[T]):
    """One device's outcome: its result or error, how long its work took, and the Ray node it
    ran on (None: a thread of this process)."""

    result: T | OfaEdgeError
    seconds: float
    node: str | None = None


def attempt(work: Callable[[DeviceSpec], T], spec: DeviceSpec) -> Attempt[T]:
    """``work(spec)`` timed, its ``OfaEdgeError`` kept as the result (anything else propagates)."""
    started = time.monotonic()
    try:
        result: T | OfaEdgeError = work(spec)
    except OfaEdgeError as err:
        result = err
    return Attempt(result, time.monotonic() - started)


def resource(name: str) -> str:
    """The Ray custom resource a node advertises to own device ``name``."""
    return f"device:{name}"


def node_resources(names: Sequence[str]) -> str:
    """``ray start --resources`` for a host that owns devices ``names``: each of capacity 1."""
    return json.dumps({resource(name): 1 for name in names})


def farm_address(given: str | None) -> str | None:
    """The Ray address a device command uses: ``--ray``, else ``$OFA_EDGE_RAY_ADDRESS``, else
    None (no farm: the devices run from this process)."""
    return given or os.environ.get(RAY_ADDRESS_ENV) or None


@contextlib.contextmanager
def _connected(address: str) -> Iterator[Any]:
    """The ``ray`` module, connected to the farm at ``address`` (token authentication required)
    for the block; a connection this process already has is kept, one made here is closed."""
    if os.environ.get("RAY_AUTH_MODE") != "token":
        raise ConfigError(
            f"Ray farm {address}: token authentication is off",
            hint="set RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN, on every node too",
        )
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f"Ray farm {address}: Ray is not installed", hint="pip install 'ofa-edge[ray]'"
        ) from None
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except ConnectionError as err:
        raise DeviceUnreachable(
            f"Ray farm {address}: cannot connect ({err})",
            hint="check the address and that RAY_AUTH_TOKEN is the cluster's token",
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _on_node(job: Callable[[DeviceSpec], Attempt[T]], spec: DeviceSpec) -> Attempt[T]:
    """The Ray task: ``job(spec)`` on the node that owns the device, which it records."""
    import ray

    done = job(spec)
    return Attempt(done.result, done.seconds, ray.get_runtime_context().get_node_id())


def run_on_farm(
    specs: Sequence[DeviceSpec],
    job: Callable[[DeviceSpec], Attempt[T]],
    address: str,
    status: Status | None,
    max_workers: int,
) -> dict[str, Attempt[T]]:
    """``job(spec)`` for every device as a Ray task on the node advertising ``device:NAME``, at
    most ``max_workers`` at once, by device name in ``specs``' order. A device no node advertises,
    or whose node dies, fails alone; any other exception cancels the rest and propagates."""
    with _connected(address) as ray:
        owned = ray.cluster_resources()
        results: dict[str, Attempt[T]] = {
            spec.name: Attempt(_unadvertised(spec.name, address), 0.0)
            for spec in specs
            if resource(spec.name) not in owned
        }
        waiting = [spec for spec in specs if spec.name not in results]
        task = ray.remote(_on_node)
        running: dict[Any, DeviceSpec] = {}
        try:
            while waiting or running:
                while waiting and len(running) < max(1, max_workers):
                    spec = waiting.pop(0)
                    options = {"num_cpus": 0, "resources": {resource(spec.name): 1}, "max_retries": 0}
                    running[task.options(**options).remote(job, spec)] = spec
                ready, _ = ray.wait(list(running), num_returns=1)
                spec = running.pop(ready[0])
                results[spec.name] = _collect(ray, ready[0], spec.name)
                if status and results[spec.name].node:
                    status(spec.name, f"ran on Ray node {results[spec.name].node}")
        except BaseException:  # Ctrl-C or a bug: the devices' other tasks stop too
            for ref in running:
                ray.cancel(ref, force=True)
            raise
    return {spec.name: results[spec.name] for spec in specs}


def _collect(ray: Any, ref: Any, name: str) -> Attempt[Any]:
    """A finished task's attempt; a node that died or a task Ray lost fails its device alone."""
    try:
        done: Attempt[Any] = ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        raise err.as_instanceof_cause() from None  # the work's own bug, as run locally
    except ray.exceptions.RayError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return Attempt(DeviceUnreachable(f"{name}: its Ray node failed: {first}"), 0.0)
    return done


def _unadvertised(name: str, address: str) -> DeviceUnreachable:
    """The error of a device no node of the farm owns."""
    join = f"ray start --address=HEAD:6379 --resources='{node_resources([name])}'"
    return DeviceUnreachable(
        f"{name}: no node of Ray farm {address} advertises {resource(name)}",
        hint=f"on the host that reaches it: {join}",
    )
