"""Driving several devices at once: one thread per device (bounded), failures kept per device.

``run_fleet`` is what every command on several devices runs (``devices check``, ``bench``,
``push``, ``lut build|validate``, ``specialize``): a device's ``OfaEdgeError`` becomes its result
and never stops the others. Host work the devices share (exporting models) is serialized where
it must be (``ofa_edge.convert.formats.EXPORT_LOCK``), so each device waits on its own hardware.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ofa_edge.devices.lock import DeviceLock
from ofa_edge.devices.sessions import open_session
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.errors import OfaEdgeError

#: ``status(device_name, message)`` as each device moves on.
Status = Callable[[str, str], None]
#: How many devices a fleet command drives at once unless told otherwise.
MAX_WORKERS = 16
T = TypeVar("T")


def run_fleet(
    specs: Sequence[DeviceSpec],
    work: Callable[[DeviceSpec], T],
    status: Status | None = None,
    max_workers: int = MAX_WORKERS,
) -> dict[str, T | OfaEdgeError]:
    """``work(spec)`` on every device concurrently, at most ``max_workers`` at once: each
    device's result, or the ``OfaEdgeError`` it failed with (also told as ``status(name,
    "FAILED: ...")``); one failure never stops the others. By device name, in ``specs``' order.
    Any other exception (Ctrl-C) cancels the devices not started yet and propagates."""

    def one(spec: DeviceSpec) -> T | OfaEdgeError:
        try:
            return work(spec)
        except OfaEdgeError as err:
            if status:
                status(spec.name, f"FAILED: {err}")
            return err

    pool = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(specs))))
    try:
        results = list(pool.map(one, specs))
    except BaseException:  # Ctrl-C or a bug: devices not started yet are not started
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return {spec.name: result for spec, result in zip(specs, results)}


def check_device(spec: DeviceSpec, status: Status | None = None) -> dict[str, Any]:
    """Connect, deploy or refresh the agent, and return the device's fingerprint with ``lock``:
    who holds the device's lock (None: nobody). Reads only, so it takes no lock itself."""
    say = status or (lambda _n, _m: None)
    say(spec.name, "connecting")
    with open_session(spec, lock=False) as session:
        say(spec.name, "agent deployed" if session.deployed else "agent up to date")
        fp = session.fingerprint()
        holder = DeviceLock(spec, session.transport).holder()
    fp["agent_deployed"] = session.deployed
    fp["lock"] = holder.to_dict() if holder else None
    locked = f"; locked by {holder.describe()}" if holder else ""
    say(spec.name, f"ok: {fp.get('cpu_model')} x{fp.get('cores')}, {fp.get('arch')}{locked}")
    return fp


def check_devices(
    specs: Sequence[DeviceSpec], status: Status | None = None, max_workers: int = MAX_WORKERS
) -> dict[str, dict[str, Any] | OfaEdgeError]:
    """``check_device`` on every device concurrently; one failure never stops the others."""
    return run_fleet(specs, lambda spec: check_device(spec, status), status, max_workers)
