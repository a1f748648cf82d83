"""A bounded wait for an Android device to cool down before a batch of measurements.

A phone throttles long before it is too hot to use: a batch measured at thermal status MODERATE
or worse times a slower chip than the one a table describes. Before each batch, both measuring
sessions read Android's thermal status (``dumpsys thermalservice``, parsed by the agent's
``parse_thermalservice``) and wait, at most the device's ``cool_down_s``, until it is at most its
``thermal_limit``; what happened goes into the batch's conditions as ``cool_down``::

    {"limit": N, "status_before": N, "status": N, "waited_s": S, "cooled": bool}

A device without a thermal status (not Android) is not waited for (``cool_down`` absent). A wait
that runs out is reported (``cooled`` false), not fatal: the batch is measured and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ofa_edge.devices.spec import DeviceSpec

#: Seconds between two readings of the thermal status while waiting.
POLL_S = 5.0


def cool_down(spec: DeviceSpec, read: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    """Wait until ``read()``'s thermal status is at most ``spec.thermal_limit``, for at most
    ``spec.cool_down_s`` seconds; the report above, or None when no status can be read."""
    first = read()
    if first is None:
        return None
    began, state = time.monotonic(), first
    while state["status"] > spec.thermal_limit and time.monotonic() - began < spec.cool_down_s:
        time.sleep(min(POLL_S, max(0.0, spec.cool_down_s - (time.monotonic() - began))))
        state = read() or state
    return {
        "limit": spec.thermal_limit,
        "status_before": first["status"],
        "status": state["status"],
        "waited_s": round(time.monotonic() - began, 3),
        "cooled": state["status"] <= spec.thermal_limit,
    }
