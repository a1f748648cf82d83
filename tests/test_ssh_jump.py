"""SSH through jump hosts (ProxyJump) against real OpenSSH sshds on loopback: the device's TCP
connection is proven to come from the jump host's sshd, the agent runs through it, every hop's
host key is checked and trusted like a device's, and failures name the hop that failed."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from ofa_edge.devices.inventory import load_inventory, parse_device
from ofa_edge.devices.spec import DeviceSpec, SshOptions
from ofa_edge.devices.ssh import SshTransport
from ofa_edge.errors import ConfigError, DeviceUnreachable, HostKeyError
from ofa_edge.testing.sshd import SshDevice
from tests.test_cli import error_line, run
from tests.test_cli_commands import ok
from tests.test_ssh import closed_port, openssh_fingerprint

pytestmark = pytest.mark.timeout(120)


def hop(device: SshDevice, **overrides: object) -> SshOptions:
    """``device`` as a jump host, with its client key and trusted host key."""
    return dataclasses.replace(device.device_spec().ssh, **overrides)  # type: ignore[arg-type]


def client_port(transport: SshTransport) -> int:
    """The client port the device saw the SSH connection come from (``SSH_CONNECTION``)."""
    return int(transport.run(["printenv", "SSH_CONNECTION"]).stdout.split()[1])


def test_device_is_reached_through_the_jump_host_and_the_link_closes_with_it(
    jump_ssh_device: SshDevice, jumped_ssh_device: SshDevice
) -> None:
    with SshTransport(jumped_ssh_device.device_spec("direct")) as direct:  # the control
        assert client_port(direct) not in jump_ssh_device.tcp_ports()
    spec = jumped_ssh_device.device_spec("behind", jump=(hop(jump_ssh_device),))
    transport = SshTransport(spec)
    port = client_port(transport)
    # The device's TCP connection is a socket of the jump host's sshd, not of this process.
    assert port in jump_ssh_device.tcp_ports()
    assert f"Connection from 127.0.0.1 port {port} " in jumped_ssh_device.log.read_text()
    transport.close()  # closes the jump host's login too: its onward connection goes away
    deadline = time.monotonic() + 5
    while port in jump_ssh_device.tcp_ports() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert port not in jump_ssh_device.tcp_ports()


def test_chain_of_two_jump_hosts(
    jump_ssh_device: SshDevice, ssh_device: SshDevice, jumped_ssh_device: SshDevice
) -> None:
    spec = jumped_ssh_device.device_spec("far", jump=(hop(jump_ssh_device), hop(ssh_device)))
    with SshTransport(spec) as transport:
        assert client_port(transport) in ssh_device.tcp_ports()  # the last hop connects onward
        assert transport.run(["echo", "two hops"]).stdout == "two hops\n"


def test_unreachable_jump_host_or_device_names_the_hop(
    jump_ssh_device: SshDevice, jumped_ssh_device: SshDevice
) -> None:
    dead = closed_port()
    spec = jumped_ssh_device.device_spec("behind", jump=(hop(jump_ssh_device, host="127.0.0.1", port=dead),))
    with pytest.raises(DeviceUnreachable) as info, SshTransport(spec) as transport:
        transport.run(["true"])
    message = str(info.value)
    assert message.startswith(f"behind: cannot reach the jump host 127.0.0.1:{dead} (")
    assert "\n" not in message and str(jumped_ssh_device.port) not in message

    # The jump host is up, the device behind it is not: the jump host says so.
    spec = dataclasses.replace(
        spec,
        ssh=dataclasses.replace(spec.ssh, port=dead, jump=(hop(jump_ssh_device),)),  # type: ignore[arg-type]
    )
    with pytest.raises(DeviceUnreachable) as info, SshTransport(spec) as transport:
        transport.run(["true"])
    jump = f"{jump_ssh_device.user}@{jump_ssh_device.host}:{jump_ssh_device.port}"
    assert str(info.value).startswith(f"behind: cannot reach {jumped_ssh_device.host}:{dead} (from {jump}: ")
    assert f"-J {jump} " in info.value.hint  # type: ignore[attr-defined]


def test_unknown_jump_host_key_is_refused_then_trusted_hop_by_hop_from_the_cli(
    jump_ssh_device: SshDevice, jumped_ssh_device: SshDevice, tmp_path: Path
) -> None:
    """``devices check`` runs the agent through the jump host once ``devices trust`` recorded
    first the jump host's key, then the device's (each in its own known_hosts)."""
    jump_known, device_known = tmp_path / "jump_known_hosts", tmp_path / "known_hosts"
    j, d = jump_ssh_device, jumped_ssh_device
    inventory = tmp_path / "devices.toml"
    inventory.write_text(
        f'[devices.behind]\nhost = "{d.host}"\nport = {d.port}\nuser = "{d.user}"\n'
        f'key = "{d.client_key}"\nknown_hosts = "{device_known}"\nworkdir = "~/agent-jump"\n'
        f'jump = {{ host = "{j.host}", port = {j.port}, user = "{j.user}", key = "{j.client_key}", '
        f'known_hosts = "{jump_known}" }}\n'
    )
    inv = ("--inventory", str(inventory))
    res = run("--json", "devices", "check", "behind", *inv)  # exit 4: the device-connection family
    failed = json.loads(res.stdout)["devices"]["behind"]
    assert res.returncode == 4 and failed["reference"] == "host-key"
    line = failed["error"]
    assert f"the host key of the jump host {j.host}:{j.port} is not in {jump_known}" in line
    assert openssh_fingerprint(j.host_public_key) in line and "ofa-edge devices trust behind" in line

    first = ok("devices", "trust", "behind", *inv)
    assert first["host"] == f"the jump host {j.host}:{j.port}"
    assert first["fingerprint"] == openssh_fingerprint(j.host_public_key)
    wrong = error_line(run("devices", "trust", "behind", "--fingerprint", first["fingerprint"], *inv), 2)
    assert f"{d.host}:{d.port} offers" in wrong  # the next host is the device, with another key
    second = ok("devices", "trust", "behind", *inv)
    assert (second["host"], second["known_hosts"]) == (f"{d.host}:{d.port}", str(device_known))
    assert second["fingerprint"] == openssh_fingerprint(d.host_public_key)

    listed = {x["name"]: x for x in ok("devices", "list", *inv)["devices"]}
    assert listed["behind"]["address"] == f"{d.user}@{d.host}:{d.port} via {j.user}@{j.host}:{j.port}"
    checked = ok("devices", "check", "behind", *inv)["devices"]["behind"]
    assert checked["ok"] and checked["fingerprint"]["agent_dir"] == f"{d.home}/agent-jump"


def test_changed_jump_host_key_is_refused(jump_ssh_device: SshDevice, jumped_ssh_device: SshDevice) -> None:
    other = jumped_ssh_device.host_public_key.read_text().split()
    forged = jump_ssh_device.root / "known_hosts.forged"  # records another key for the jump host
    forged.write_text(f"[{jump_ssh_device.host}]:{jump_ssh_device.port} {other[0]} {other[1]}\n")
    spec = jumped_ssh_device.device_spec("behind", jump=(hop(jump_ssh_device, known_hosts=forged),))
    with pytest.raises(HostKeyError) as info, SshTransport(spec) as transport:
        transport.run(["true"])
    message = str(info.value)
    assert (
        f"the host key of the jump host {jump_ssh_device.host}:{jump_ssh_device.port} has CHANGED" in message
    )
    assert "the jump host now offers" in message and "\n" not in message


def test_inventory_jump_forms(tmp_path: Path) -> None:
    def jumps(value: object) -> tuple[SshOptions, ...]:
        table = {"host": "10.0.0.9", "key": "id", "known_hosts": "kh", "jump": value}
        spec: DeviceSpec = parse_device("pi", table, tmp_path)
        assert spec.ssh is not None
        return spec.ssh.jump

    (only,) = jumps("admin@gw.example:2222")
    assert (only.user, only.host, only.port) == ("admin", "gw.example", 2222)
    assert (only.key, only.known_hosts) == (tmp_path / "id", tmp_path / "kh")  # the device's
    first, second = jumps(["gw", {"host": "::1", "port": 23, "key": "/k", "known_hosts": "gw_known"}])
    assert (first.user, first.host, first.port) == (None, "gw", 22)
    assert (second.host, second.port, second.key, second.known_hosts) == (
        "::1",
        23,
        Path("/k"),
        tmp_path / "gw_known",
    )
    assert jumps("[fe80::1]:2200")[0].host == "fe80::1"
    for bad, needle in [
        ("two words", "jump='two words' is not a jump host"),
        ([], "jump=[] is not a jump host"),
        ({"hots": "gw"}, "unknown jump host field(s) ['hots']"),
        ({"port": 22}, "jump needs a host"),
        ("gw:70000", "jump port=70000 must be an integer"),
    ]:
        with pytest.raises(ConfigError) as info:
            jumps(bad)
        assert str(info.value).startswith("device 'pi': ") and needle in str(info.value), info.value


def test_ansible_proxy_jump_becomes_jump_hosts(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_text(
        "[pis]\n"
        "pi-a ansible_host=10.0.0.5 ansible_ssh_common_args='-o ProxyJump=admin@gw:2222,bastion'\n"
        'pi-b ansible_host=10.0.0.6 ansible_ssh_common_args="-J ops@gw -o ServerAliveInterval=5"\n'
        "pi-c ansible_host=10.0.0.7 ansible_ssh_common_args='-o StrictHostKeyChecking=yes'\n"
        "[rack]\nnano ansible_host=10.0.0.9\n"
        "[rack:vars]\nansible_ssh_common_args='-o \"ProxyJump rack-gw\"'\n"
    )
    devices = load_inventory(inventory)

    def hops(name: str) -> list[tuple[str | None, str, int]]:
        ssh = devices[name].ssh
        assert ssh is not None
        return [(j.user, j.host, j.port) for j in ssh.jump]

    assert hops("pi-a") == [("admin", "gw", 2222), (None, "bastion", 22)]
    assert hops("pi-b") == [("ops", "gw", 22)]
    assert hops("pi-c") == []
    assert hops("nano") == [(None, "rack-gw", 22)]


def test_ssh_config_names_the_device_and_its_jump_host(
    jump_ssh_device: SshDevice, jumped_ssh_device: SshDevice, tmp_path: Path
) -> None:
    """``ssh_config = PATH``: HostName, Port, User, IdentityFile and ProxyJump come from an
    OpenSSH client config, as `ssh behind` would use them; the inventory's own fields win."""
    j, d = jump_ssh_device, jumped_ssh_device
    (tmp_path / "ssh_config").write_text(
        f"Host behind\n HostName {d.host}\n Port {d.port}\n User {d.user}\n IdentityFile {d.client_key}\n"
        " ProxyJump bastion\n"
        f"Host bastion\n HostName {j.host}\n Port {j.port}\n User {j.user}\n IdentityFile {j.client_key}\n"
    )
    known_hosts = tmp_path / "known_hosts"  # both hosts' keys in one file, as ~/.ssh/known_hosts
    known_hosts.write_text(j.known_hosts.read_text() + d.known_hosts.read_text())
    inventory = tmp_path / "devices.toml"
    inventory.write_text(
        '[devices.behind]\nhost = "behind"\nssh_config = "ssh_config"\nknown_hosts = "known_hosts"\n'
        '[devices.other]\nhost = "behind"\nssh_config = "ssh_config"\nuser = "nobody"\njump = []\n'
        '[devices.plain]\nhost = "behind"\n'
    )
    with pytest.raises(ConfigError, match="jump=\\[\\] is not a jump host"):
        load_inventory(inventory)
    inventory.write_text(inventory.read_text().replace("jump = []\n", ""))
    devices = load_inventory(inventory)
    assert devices["other"].ssh is not None and devices["other"].ssh.user == "nobody"
    assert devices["plain"].ssh is not None and devices["plain"].ssh.host == "behind"  # not asked for
    spec = devices["behind"]
    assert spec.ssh is not None and [(h.host, h.port) for h in spec.ssh.jump] == [(j.host, j.port)]
    with SshTransport(spec) as transport:
        assert client_port(transport) in j.tcp_ports()
    inventory.write_text('[devices.x]\nhost = "behind"\nssh_config = "missing"\n')
    with pytest.raises(ConfigError, match=r"device 'x': cannot read ssh_config .*missing"):
        load_inventory(inventory)
