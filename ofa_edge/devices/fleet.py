"""Driving several devices at once: one thread per device, failures kept per device."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ofa_edge.devices.lock import DeviceLock
from ofa_edge.devices.sessions import open_session
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.errors import OfaEdgeError

#: ``status(device_name, message)`` as each device moves on.
Status = Callable[[str, str], None]


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
    specs: Sequence[DeviceSpec], status: Status | None = None, max_workers: int = 16
) -> dict[str, dict[str, Any] | OfaEdgeError]:
    """``check_device`` on every device concurrently; one failure never stops the others."""

    def one(spec: DeviceSpec) -> dict[str, Any] | OfaEdgeError:
        try:
            return check_device(spec, status)
        except OfaEdgeError as err:
            if status:
                status(spec.name, f"FAILED: {err}")
            return err

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(specs)))) as pool:
        results = list(pool.map(one, specs))
    return {spec.name: result for spec, result in zip(specs, results)}
