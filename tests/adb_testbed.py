"""Fixtures for a fake phone reached through the real ``adb`` client and a private adb server.

One adb server per session (own HOME, TMPDIR and ANDROID_ADB_SERVER_PORT, killed at the end)
and one ``FakeAdbd`` per test on an ephemeral port of 127.0.0.1. Tests skip only when the adb
client is not installed. Load with ``pytest_plugins = ("tests.adb_testbed",)``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ofa_edge.devices.adb import AdbTransport
from ofa_edge.devices.inventory import AdbOptions, DeviceSpec
from ofa_edge.testing.fake_adbd import FakeAdbd

ADB_CALL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class AdbServer:
    """A private adb server: the client binary, the server's port, the env every call needs."""

    binary: str
    port: int
    env: dict[str, str]

    def adb(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real adb client against this server (bounded by ``ADB_CALL_TIMEOUT_S``)."""
        return subprocess.run(
            [self.binary, *args],
            env=self.env,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=ADB_CALL_TIMEOUT_S,
        )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (ephemeral, so outside adb's 5555-5585 scan)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def adb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdbServer]:
    """Start a private adb server for the session; ``adb kill-server`` it afterwards."""
    binary = shutil.which("adb")
    if binary is None:
        pytest.skip("the adb client is not installed (Debian/Ubuntu: apt install adb)")
    home = tmp_path_factory.mktemp("adb-home")
    port = free_port()
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(home), "ANDROID_ADB_SERVER_PORT": str(port)}
    server = AdbServer(binary, port, env)
    started = server.adb("start-server")
    assert started.returncode == 0, started.stderr
    try:
        yield server
    finally:
        server.adb("kill-server")


@pytest.fixture
def phone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAdbd]:
    """A fake phone (test double of adbd) whose storage is a fresh folder with a space in it."""
    with FakeAdbd(tmp_path_factory.mktemp("phone") / "internal storage") as fake:
        yield fake


@pytest.fixture
def adb_spec(adb_server: AdbServer, phone: FakeAdbd) -> Iterator[DeviceSpec]:
    """The inventory entry for ``phone`` on the private server; disconnected after the test."""
    options = AdbOptions(serial=phone.serial, adb=adb_server.binary, server_port=adb_server.port)
    yield DeviceSpec(name="fakephone", transport="adb", adb=options)
    adb_server.adb("disconnect", phone.serial)


@pytest.fixture
def transport(adb_spec: DeviceSpec) -> Iterator[AdbTransport]:
    """An ``AdbTransport`` to ``phone``, closed after the test."""
    t = AdbTransport(adb_spec)
    try:
        yield t
    finally:
        t.close()
