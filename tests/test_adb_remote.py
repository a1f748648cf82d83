"""A phone attached to another machine's adb server, reached with ``adb -H HOST -P PORT``
(inventory ``server_host``/``server_port``): a second real adb server on loopback stands for the
other workstation, and this host's own server never sees the phone."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ofa_edge.devices.adb import AdbTransport
from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.inventory import load_inventory
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.devices.transports import TRANSPORTS
from ofa_edge.errors import ConfigError, DeviceUnreachable
from ofa_edge.testing.fake_adbd import FakeAdbd
from tests.test_ssh import closed_port

if TYPE_CHECKING:
    from tests.adb_testbed import AdbServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def remote_phone(remote_adb_server: AdbServer, tmp_path: Path) -> Iterator[FakeAdbd]:
    """A fake phone attached to the other workstation's server, authorizing only its key."""
    with FakeAdbd(tmp_path / "remote phone", authorized_keys=[remote_adb_server.public_key]) as phone:
        remote_adb_server.adb("connect", phone.serial)
        deadline = time.monotonic() + 10
        while f"{phone.serial}\tdevice" not in remote_adb_server.adb("devices").stdout:
            assert time.monotonic() < deadline, remote_adb_server.adb("devices").stdout
            time.sleep(0.05)
        yield phone


def inventory_spec(tmp_path: Path, table: str) -> DeviceSpec:
    inventory = tmp_path / "devices.toml"
    inventory.write_text(f'[devices.far]\ntransport = "adb"\n{table}')
    return load_inventory(inventory)["far"]


def test_phone_on_another_adb_server_runs_the_agent(
    adb_server: AdbServer,
    remote_adb_server: AdbServer,
    remote_phone: FakeAdbd,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # This host's own default server is the session's private one, which knows nothing of the phone.
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(adb_server.port))
    monkeypatch.setenv("HOME", adb_server.env["HOME"])
    spec = inventory_spec(
        tmp_path,
        f'serial = "{remote_phone.serial}"\nadb = "{adb_server.binary}"\nserver_host = "127.0.0.1"\n'
        f'server_port = {remote_adb_server.port}\npython = "{sys.executable}"\nruntime = "tflite"\n',
    )
    address = TRANSPORTS["adb"].address(spec)
    assert address == f"adb {remote_phone.serial} on the adb server 127.0.0.1:{remote_adb_server.port}"
    with AgentSession(spec) as session:
        assert session.fingerprint()["agent_dir"] == spec.workdir
    assert remote_phone.android_path(f"{spec.workdir}/ofa_edge_agent.py").is_file()
    assert remote_phone.serial not in adb_server.adb("devices").stdout
    assert remote_phone.prompts == []  # only the remote server's key ever knocked


def test_remote_adb_server_down_is_one_clear_line(adb_server: AdbServer, tmp_path: Path) -> None:
    port = closed_port()
    spec = inventory_spec(
        tmp_path,
        f'serial = "R58M123ABC"\nadb = "{adb_server.binary}"\nserver_host = "127.0.0.1"\n'
        f"server_port = {port}\n",
    )
    with pytest.raises(DeviceUnreachable) as info:
        AdbTransport(spec).run(["true"])
    assert str(info.value).startswith("far: adb: ") and f"127.0.0.1:{port}" in str(info.value)
    assert "\n" not in str(info.value)
    assert f"`adb -a -P {port} server nodaemon` there" in str(info.value.hint)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"device 'far': server_host must be a non-empty string"):
        inventory_spec(tmp_path, "server_host = 5\n")
