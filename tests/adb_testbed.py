"""Fixtures for a fake phone reached through the real ``adb`` client and a private adb server.

One adb server per session (own HOME, TMPDIR and ANDROID_ADB_SERVER_PORT, killed at the end)
and one ``FakeAdbd`` per test on an ephemeral port of 127.0.0.1. The server makes its RSA key in
its own HOME (``.android/adbkey``; ``ADB_VENDOR_KEYS`` and the other key locations are cleared),
so the user's keys are never read or changed; the fake phone has authorized that key, as a
phone does once "Allow USB debugging?" was accepted. Tests skip only when the adb client is not
installed. Load with ``pytest_plugins = ("tests.adb_testbed",)``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ofa_edge.devices.adb import AdbTransport
from ofa_edge.devices.spec import AdbOptions, DeviceSpec
from ofa_edge.testing.fake_adbd import FakeAdbd

ADB_CALL_TIMEOUT_S = 30.0
# Where an adb server would look for keys or its settings besides $HOME/.android.
_KEY_LOCATIONS = ("ADB_VENDOR_KEYS", "ANDROID_SDK_HOME", "ANDROID_USER_HOME", "ANDROID_PREFS_ROOT")


@dataclass(frozen=True)
class AdbServer:
    """A private adb server: the client binary, the server's port, the env every call needs."""

    binary: str
    port: int
    env: dict[str, str]
    public_key: str  #: the server's ``adbkey.pub`` line: what a phone authorizes

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


def _start_server(home: Path) -> Iterator[AdbServer]:
    """Start a private adb server with its HOME in ``home``; ``adb kill-server`` it afterwards."""
    binary = shutil.which("adb")
    if binary is None:
        pytest.skip("the adb client is not installed (Debian/Ubuntu: apt install adb)")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in _KEY_LOCATIONS}
    env.update(HOME=str(home), TMPDIR=str(home), ANDROID_ADB_SERVER_PORT=str(port))
    server = AdbServer(binary, port, env, public_key="")
    started = server.adb("start-server")
    assert started.returncode == 0, started.stderr
    server = dataclasses.replace(server, public_key=(home / ".android" / "adbkey.pub").read_text().strip())
    try:
        yield server
    finally:
        server.adb("kill-server")


@pytest.fixture(scope="session")
def adb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdbServer]:
    """The session's private adb server."""
    yield from _start_server(tmp_path_factory.mktemp("adb-home"))


@pytest.fixture
def remote_adb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdbServer]:
    """A second adb server with its own key, standing for another workstation's (on loopback)."""
    yield from _start_server(tmp_path_factory.mktemp("adb-home-remote"))


@pytest.fixture
def phone(adb_server: AdbServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAdbd]:
    """A fake phone (test double of adbd) that has authorized the test server's key; its storage
    is a fresh folder with a space in it."""
    storage = tmp_path_factory.mktemp("phone") / "internal storage"
    with FakeAdbd(storage, authorized_keys=[adb_server.public_key]) as fake:
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
