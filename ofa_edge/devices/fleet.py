"""Driving several devices at once: one thread per device (bounded), or one Ray task per device
on the farm node that owns it (``ofa_edge.devices.farm``); failures kept per device.

``run_fleet`` is what every command on several devices runs (``devices check``, ``bench``,
``push``, ``lut build|validate``, ``specialize``): a device's ``OfaEdgeError`` becomes its result
and never stops the others. Host work the devices share (exporting models) is serialized where
it must be (``ofa_edge.convert.formats.EXPORT_LOCK``), so each device waits on its own hardware.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ofa_edge.devices.farm import Attempt, Status, attempt, run_on_farm
from ofa_edge.devices.lock import DeviceLock
from ofa_edge.devices.sessions import open_session
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.errors import OfaEdgeError

#: How many devices a fleet command drives at once unless told otherwise.
MAX_WORKERS = 16
T = TypeVar("T")


def run_fleet(
    specs: Sequence[DeviceSpec],
    work: Callable[[DeviceSpec], T],
    status: Status | None = None,
    max_workers: int = MAX_WORKERS,
    farm: str | None = None,
) -> dict[str, T | OfaEdgeError]:
    """``work(spec)`` on every device concurrently, at most ``max_workers`` at once: each
    device's result, or the ``OfaEdgeError`` it failed with (also told as ``status(name,
    "FAILED: ...")``); one failure never stops the others. By device name, in ``specs``' order.
    Any other exception (Ctrl-C) cancels the devices not started yet and propagates. ``farm``: a
    Ray address; each device's work then runs on the node that owns the device."""
    return {name: a.result for name, a in run_attempts(specs, work, status, max_workers, farm).items()}


def run_attempts(
    specs: Sequence[DeviceSpec],
    work: Callable[[DeviceSpec], T],
    status: Status | None = None,
    max_workers: int = MAX_WORKERS,
    farm: str | None = None,
) -> dict[str, Attempt[T]]:
    """:func:`run_fleet`, each device's outcome with its seconds and the Ray node it ran on."""
    job = functools.partial(attempt, work)
    if farm:
        attempts = run_on_farm(specs, job, farm, status, max_workers)
    else:
        attempts = dict(zip((spec.name for spec in specs), _threads(specs, job, max_workers)))
    for name, a in attempts.items():
        if status and isinstance(a.result, OfaEdgeError):
            status(name, f"FAILED: {a.result}")
    return attempts


def _threads(
    specs: Sequence[DeviceSpec], job: Callable[[DeviceSpec], Attempt[T]], max_workers: int
) -> list[Attempt[T]]:
    """``job`` on every device in threads, at most ``max_workers`` at once, in ``specs``' order."""
    pool = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(specs))))
    try:
        results = list(pool.map(job, specs))
    except BaseException:  # Ctrl-C or a bug: devices not started yet are not started
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results


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
    specs: Sequence[DeviceSpec],
    status: Status | None = None,
    max_workers: int = MAX_WORKERS,
    farm: str | None = None,
) -> dict[str, dict[str, Any] | OfaEdgeError]:
    """``check_device`` on every device concurrently (on a Ray ``farm``, each on the node that
    owns it, telling only how each ended); one failure never stops the others."""
    work = functools.partial(check_device, status=None if farm else status)
    return run_fleet(specs, work, status, max_workers, farm)
