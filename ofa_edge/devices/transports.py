"""The transports a device is reached by, by their inventory name: the one registry that the
inventory validates ``transport = ...`` against, ``devices list`` describes devices with and
:func:`open_transport` opens.

Each transport class is imported only when a device uses it, so paramiko loads only for SSH.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.devices.transport import Transport
from ofa_edge.errors import DeviceError


@dataclass(frozen=True)
class TransportKind:
    """One way of reaching a device: the inventory fields it adds to the common ones, how its
    address reads, and how a transport is opened (its module imported on first use)."""

    fields: frozenset[str]
    address: Callable[[DeviceSpec], str]
    open: Callable[[DeviceSpec], Transport]


def _local(spec: DeviceSpec) -> Transport:
    from ofa_edge.devices.local import LocalTransport

    return LocalTransport(spec)


def _ssh(spec: DeviceSpec) -> Transport:
    from ofa_edge.devices.ssh import SshTransport  # paramiko

    return SshTransport(spec)


def _adb(spec: DeviceSpec) -> Transport:
    from ofa_edge.devices.adb import AdbTransport

    return AdbTransport(spec)


def _ssh_address(spec: DeviceSpec) -> str:
    assert spec.ssh is not None
    hops = [*spec.ssh.jump, spec.ssh]
    return " via ".join(f"{h.user + '@' if h.user else ''}{h.host}:{h.port}" for h in reversed(hops))


def _adb_address(spec: DeviceSpec) -> str:
    assert spec.adb is not None
    server = f" on the adb server {spec.adb.server_host}:{spec.adb.server_port or 5037}"
    return f"adb {spec.adb.serial or '(only device)'}" + (server if spec.adb.server_host else "")


TRANSPORTS: dict[str, TransportKind] = {
    "ssh": TransportKind(
        frozenset({"host", "port", "user", "key", "known_hosts", "connect_timeout", "jump", "ssh_config"}),
        _ssh_address,
        _ssh,
    ),
    "adb": TransportKind(
        frozenset({"serial", "adb", "server_port", "server_host", "benchmark_model"}), _adb_address, _adb
    ),
    "local": TransportKind(frozenset(), lambda spec: "this machine", _local),
}


def open_transport(spec: DeviceSpec) -> Transport:
    """The transport for ``spec.transport``."""
    kind = TRANSPORTS.get(spec.transport)
    if kind is None:
        raise DeviceError(f"{spec.name}: unknown transport {spec.transport!r}")
    return kind.open(spec)
