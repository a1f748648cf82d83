"""Which measuring session a device gets: the one place that knows every session kind.

The Python agent everywhere, except on an ADB device whose inventory names a ``benchmark_model``
binary: TFLite's own tool then measures (phones without Python). Both follow
``ofa_edge.devices.session.MeasuringSession``. Every measuring session holds the device's lock
(``ofa_edge.devices.lock``) from its start to its close, so no two commands measure at once.
"""

from __future__ import annotations

from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.android import BenchmarkModelSession
from ofa_edge.devices.lock import DeviceLock
from ofa_edge.devices.session import MeasuringSession
from ofa_edge.devices.spec import DeviceSpec


def open_session(spec: DeviceSpec, *, lock: bool = True) -> MeasuringSession:
    """The measuring session for the device ``spec`` (not started: use it as a context manager);
    ``lock=False`` for a session that only reads the device (``devices check``)."""
    device_lock = DeviceLock(spec) if lock else None
    if spec.adb is not None and spec.adb.benchmark_model is not None:
        return BenchmarkModelSession(spec, lock=device_lock)
    return AgentSession(spec, lock=device_lock)
