"""pytest fixtures with real OpenSSH devices on loopback (``ofa_edge.testing.sshd``).

Skipped, with the reason, only where sshd is missing or we are not root. Every device is torn
down (process tree, cgroup, files) even when its tests fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ofa_edge.devices.ssh import SshTransport
from ofa_edge.testing.sshd import SshDevice, sshd_unavailable


def _device(**options: Any) -> Iterator[SshDevice]:
    reason = sshd_unavailable()
    if reason:
        pytest.skip(reason)
    with SshDevice(**options) as device:
        yield device


@pytest.fixture(scope="session")
def ssh_device() -> Iterator[SshDevice]:
    """A device with no CPU limit (a "Jetson") on 127.0.0.2, shared by the session."""
    yield from _device(host="127.0.0.2")


@pytest.fixture(scope="session")
def slow_ssh_device() -> Iterator[SshDevice]:
    """A device capped at 10 % of one core (a "Raspberry Pi") on 127.0.0.3."""
    yield from _device(host="127.0.0.3", cpu_quota=0.1)


@pytest.fixture
def fresh_ssh_device() -> Iterator[SshDevice]:
    """A device of the test's own, for tests that change it (its host key, its sessions)."""
    yield from _device(host="127.0.0.4")


@pytest.fixture
def ssh_transport(ssh_device: SshDevice) -> Iterator[SshTransport]:
    """An ``SshTransport`` to ``ssh_device`` named "jetson", closed after the test."""
    with SshTransport(ssh_device.device_spec("jetson")) as transport:
        yield transport
