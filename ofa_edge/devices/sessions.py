"""Which measuring session a device gets: the one place that knows every session kind.

The Python agent everywhere, except on an ADB device whose inventory names a ``benchmark_model``
binary: TFLite's own tool then measures (phones without Python). Both follow
``ofa_edge.devices.session.MeasuringSession``.
"""

from __future__ import annotations

from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.android import BenchmarkModelSession
from ofa_edge.devices.session import MeasuringSession
from ofa_edge.devices.spec import DeviceSpec


def open_session(spec: DeviceSpec) -> MeasuringSession:
    """The measuring session for the device ``spec`` (not started: use it as a context manager)."""
    if spec.adb is not None and spec.adb.benchmark_model is not None:
        return BenchmarkModelSession(spec)
    return AgentSession(spec)
