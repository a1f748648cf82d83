"""The device inventory: ``devices.toml`` (or an Ansible inventory) read into typed specs.

Where the file is: ``--inventory PATH``, else ``$OFA_EDGE_INVENTORY``, else ``./devices.toml``
(a missing default file just means "only ``local``"). One table per device::

    [devices.pi4]
    transport = "ssh"            # "ssh" | "adb" | "local"
    host = "192.168.1.40"        # ssh: host, port (22), user, key (else the SSH agent),
    user = "pi"                  #      known_hosts (default ~/.ssh/known_hosts)
    key = "~/.ssh/id_ed25519"
    jump = "admin@gateway:22"    # optional jump host(s): a string, a table or a list (ProxyJump)
    ssh_config = true            # optional: fill in from ~/.ssh/config (or this path) for host
    runtime = "onnxruntime"      # all: runtime, threads, workdir, python, cpus (pinning)
    threads = 4
    groups = ["pis", "lab"]      # optional: commands take --group pis for every device in it

    [devices.orin]               # all: backend, what models run on (default: the CPU)
    backend = { runtime = "onnxruntime", precision = "fp16", providers = [
        { name = "TensorrtExecutionProvider", trt_engine_cache_enable = true, trt_engine_cache_path = "trt" },
        "CUDAExecutionProvider" ] }

    [devices.nano]               # a Jetson without onnxruntime-gpu: TensorRT's trtexec, engines
    backend = { runtime = "trtexec", precision = "fp16" }   # built on the device (fp32|fp16|int8)

    [devices.pixel7]
    transport = "adb"
    backend = { runtime = "tflite", delegate = "gpu", precision = "fp16", allow_partial = false }

On Android, ``thermal_limit`` (default 1, light) and ``cool_down_s`` (default 120) bound the
wait for the thermal status to fall to the limit before each batch (``ofa_edge.devices.thermal``).

A ``backend`` (``ofa_edge.devices.backend``) has a ``runtime`` (else the device's ``runtime``)
and, per runtime: onnxruntime ``providers``, a list in order of preference of onnxruntime's
provider names or tables ``{name = ..., OPTION = VALUE}`` of that provider's options (default
``["CPUExecutionProvider"]``); tflite ``delegate`` = ``xnnpack`` (default) | ``none`` | ``gpu`` |
``nnapi``, and for the Python agent the delegate's ``library`` (gpu default
``libtensorflowlite_gpu_delegate.so``; nnapi needs one) and its ``options``. Both take
``precision`` (``fp32`` default; ``fp16`` for TensorRT or the gpu/nnapi delegate, ``int8`` for
TensorRT: the precision the accelerator may compute in) and ``allow_partial`` (false: a model
not wholly on the accelerator is refused). trtexec (TensorRT's own tool, on Jetsons without
onnxruntime-gpu) takes ``precision`` alone: the precision its engines are built in.

A device named ``local`` (this machine) always exists unless the inventory defines one. The
transports and the fields each takes are ``ofa_edge.devices.transports.TRANSPORTS``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofa_edge.devices.ansible import parse_ansible
from ofa_edge.devices.backend import parse_backend
from ofa_edge.devices.spec import RUNTIMES, AdbOptions, DeviceSpec, SshOptions, local_device, local_workdir
from ofa_edge.devices.transports import TRANSPORTS
from ofa_edge.errors import ConfigError, UnknownName

if TYPE_CHECKING:
    from paramiko import SSHConfig

#: Where phones let a shell user write and execute.
ADB_WORKDIR = "/data/local/tmp/ofa-edge-agent"
#: Fields every device table may set, whatever its transport.
COMMON_FIELDS = frozenset(
    {
        "transport",
        "runtime",
        "threads",
        "workdir",
        "python",
        "cpus",
        "description",
        "slowdown",
        "lock_timeout",
        "groups",
        "backend",
        "thermal_limit",
        "cool_down_s",
    }
)
#: Fields of a jump host's table; key, known_hosts (and connect_timeout) default to the device's.
JUMP_FIELDS = frozenset({"host", "port", "user", "key", "known_hosts"})
_DESTINATION = re.compile(
    r"(?:(?P<user>[^@\s]+)@)?(?:\[(?P<ipv6>[^\]\s]+)\]|(?P<host>[^:@\s]+))(?::(?P<port>\d+))?"
)


def _int(name: str, key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"device {name!r}: {key}={value!r} must be an integer in {lo}..{hi}")
    return value


def _str(name: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"device {name!r}: {key} must be a non-empty string, got {value!r}")
    return value


def parse_device(name: str, table: dict[str, Any], base: Path) -> DeviceSpec:
    """Validate one device table; paths are relative to the inventory file's folder."""
    if not isinstance(table, dict):
        raise ConfigError(f"device {name!r}: expected a table of settings")
    transport = table.get("transport", "ssh" if "host" in table else "local")
    if transport not in TRANSPORTS:
        raise ConfigError(f"device {name!r}: transport={transport!r} is not one of {list(TRANSPORTS)}")
    allowed = COMMON_FIELDS | TRANSPORTS[transport].fields
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"device {name!r}: unknown field(s) {unknown} for transport {transport!r}",
            hint=f"allowed: {', '.join(sorted(allowed))}",
        )
    backend = None
    if "backend" in table:
        backend = parse_backend(name, table["backend"], table.get("runtime", "onnxruntime"))
    runtime = table.get("runtime", backend.runtime if backend else "onnxruntime")
    if runtime not in RUNTIMES:
        raise ConfigError(f"device {name!r}: runtime={runtime!r} is not one of {list(RUNTIMES)}")
    if backend is not None and backend.runtime != runtime:
        raise ConfigError(f"device {name!r}: runtime={runtime!r} but backend runtime={backend.runtime!r}")

    slowdown = table.get("slowdown", 1.0)
    if isinstance(slowdown, bool) or not isinstance(slowdown, int | float) or not 0.01 <= slowdown <= 1000:
        raise ConfigError(
            f"device {name!r}: slowdown={slowdown!r} must be a number in 0.01..1000",
            hint="how many times longer than a desktop the device takes (an emulated board: 20)",
        )
    lock_timeout = table.get("lock_timeout", DeviceSpec.lock_timeout)
    if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, int | float) or lock_timeout < 0:
        raise ConfigError(
            f"device {name!r}: lock_timeout={lock_timeout!r} must be a number of seconds >= 0",
            hint="how long a command waits while another one measures on the device",
        )
    cool_down_s = table.get("cool_down_s", DeviceSpec.cool_down_s)
    if isinstance(cool_down_s, bool) or not isinstance(cool_down_s, int | float) or cool_down_s < 0:
        raise ConfigError(
            f"device {name!r}: cool_down_s={cool_down_s!r} must be a number of seconds >= 0",
            hint="the longest wait for an Android device to cool down before a batch (0: never wait)",
        )
    cpus = table.get("cpus")
    if cpus is not None:
        if not isinstance(cpus, list) or not cpus:
            raise ConfigError(f"device {name!r}: cpus must be a list of CPU numbers, got {cpus!r}")
        cpus = tuple(_int(name, "cpus[]", c, 0, 4095) for c in cpus)
    groups = table.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise ConfigError(
            f"device {name!r}: groups must be a list of group names, got {groups!r}",
            hint='e.g. groups = ["pis", "lab"]',
        )
    ssh = adb = None
    if transport == "ssh":
        config = _ssh_config(name, table.get("ssh_config", False), base)
        table = _configured(table, config)
        ssh = _ssh_options(name, table, base)
        if "jump" in table:
            ssh = dataclasses.replace(ssh, jump=_jumps(name, table["jump"], ssh, base, config))
    elif transport == "adb":
        adb = AdbOptions(
            serial=_str(name, "serial", table["serial"]) if "serial" in table else None,
            adb=_str(name, "adb", table.get("adb", "adb")),
            server_port=_int(name, "server_port", table["server_port"], 1, 65535)
            if "server_port" in table
            else None,
            server_host=_str(name, "server_host", table["server_host"]) if "server_host" in table else None,
            benchmark_model=_path(name, table, "benchmark_model", base),
        )
    default_workdir = {"adb": ADB_WORKDIR, "local": local_workdir()}.get(transport, DeviceSpec.workdir)
    return DeviceSpec(
        name=name,
        transport=transport,
        runtime=runtime,
        threads=_int(name, "threads", table.get("threads", 1), 1, 1024),
        workdir=_str(name, "workdir", table.get("workdir", default_workdir)),
        python=_str(name, "python", table.get("python", DeviceSpec.python)),
        cpus=cpus,
        description=str(table.get("description", "")),
        ssh=ssh,
        adb=adb,
        slowdown=float(slowdown),
        lock_timeout=float(lock_timeout),
        groups=tuple(groups),
        backend=backend,
        thermal_limit=_int(name, "thermal_limit", table.get("thermal_limit", DeviceSpec.thermal_limit), 0, 6),
        cool_down_s=float(cool_down_s),
    )


def _path(name: str, table: dict[str, Any], key: str, base: Path) -> Path | None:
    """``table[key]`` as a path (``~`` expanded, relative to ``base``), None if not set."""
    if key not in table:
        return None
    p = Path(_str(name, key, table[key])).expanduser()
    return p if p.is_absolute() else base / p


def _ssh_options(
    name: str, table: dict[str, Any], base: Path, defaults: SshOptions | None = None, what: str = ""
) -> SshOptions:
    """The SSH settings of a device's table, or (``what="jump "``) of one of its jump hosts, whose
    key, known_hosts and connect_timeout default to the device's (``defaults``)."""
    if "host" not in table:
        raise ConfigError(f"device {name!r}: {what or 'ssh '}needs a host", hint='add host = "ADDRESS"')
    return SshOptions(
        host=_str(name, f"{what}host", table["host"]),
        port=_int(name, f"{what}port", table.get("port", 22), 1, 65535),
        user=_str(name, f"{what}user", table["user"]) if "user" in table else None,
        key=_path(name, table, "key", base) or (defaults.key if defaults else None),
        known_hosts=_path(name, table, "known_hosts", base)
        or (defaults.known_hosts if defaults else Path("~/.ssh/known_hosts").expanduser()),
        connect_timeout=defaults.connect_timeout if defaults else float(table.get("connect_timeout", 10.0)),
    )


def _jumps(
    name: str, value: Any, device: SshOptions, base: Path, config: SSHConfig | None
) -> tuple[SshOptions, ...]:
    """The jump hosts of ``jump``: ``"[user@]host[:port]"``, a table of ``JUMP_FIELDS``, or a
    non-empty list of them (first hop first, as OpenSSH's ``ProxyJump a,b``); ``"a,b"`` from an
    ssh config. A hop's host is looked up in ``config`` too."""
    hops = value.split(",") if isinstance(value, str) else value
    jumps = []
    for hop in hops if isinstance(hops, list) and hops else [value]:
        if isinstance(hop, str) and (match := _DESTINATION.fullmatch(hop)):
            parts = {"host": match["host"] or match["ipv6"], "user": match["user"], "port": match["port"]}
            hop = _configured({k: int(v) if k == "port" else v for k, v in parts.items() if v}, config)
            if "jump" in hop:
                raise ConfigError(
                    f"device {name!r}: jump host {parts['host']} has a ProxyJump of its own in ssh_config",
                    hint="list the whole chain, first hop first, in the device's ProxyJump or jump",
                )
        if not isinstance(hop, dict):
            raise ConfigError(
                f"device {name!r}: jump={hop!r} is not a jump host",
                hint='use jump = "user@host:port", a table {host = ..., user = ..., key = ...} or a list',
            )
        unknown = sorted(set(hop) - JUMP_FIELDS)
        if unknown:
            raise ConfigError(
                f"device {name!r}: unknown jump host field(s) {unknown}",
                hint=f"allowed: {', '.join(sorted(JUMP_FIELDS))}",
            )
        jumps.append(_ssh_options(name, hop, base, device, "jump "))
    return tuple(jumps)


def _ssh_config(name: str, value: Any, base: Path) -> SSHConfig | None:
    """The OpenSSH client config that ``ssh_config`` asks for: ``true`` for ~/.ssh/config, or a
    path; None for ``false`` (the default: only the inventory counts)."""
    if value is False:
        return None
    if value is not True and not (isinstance(value, str) and value):
        raise ConfigError(f"device {name!r}: ssh_config must be true, false or a path, got {value!r}")
    from paramiko import SSHConfig  # only for inventories that ask for it

    path = Path("~/.ssh/config" if value is True else value).expanduser()
    path = path if path.is_absolute() else base / path
    try:
        return SSHConfig.from_path(str(path))
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"device {name!r}: cannot read ssh_config {path}: {err}",
            hint="fix the file, or set ssh_config = false",
        ) from None


def _configured(table: dict[str, Any], config: SSHConfig | None) -> dict[str, Any]:
    """``table`` with what ``config`` says for its host (HostName, User, Port, IdentityFile,
    ProxyJump) where the table itself is silent."""
    if config is None or not isinstance(table.get("host"), str):
        return table
    found = config.lookup(table["host"])
    filled = {
        "host": found.get("hostname"),
        "user": found.get("user"),
        "port": int(found["port"]) if str(found.get("port", "")).isdigit() else None,
        "key": (found.get("identityfile") or [None])[0],
        "jump": found.get("proxyjump") if found.get("proxyjump", "none").lower() != "none" else None,
    }
    return {
        **{k: v for k, v in filled.items() if v is not None},
        **{k: v for k, v in table.items() if k != "host"},
    }


def select(devices: dict[str, DeviceSpec], names: list[str], groups: list[str]) -> list[DeviceSpec]:
    """The devices ``names`` and the members of ``groups`` name, once each, names first then
    each group's members in inventory order; an unknown name or group is an error."""
    known_groups = sorted({g for spec in devices.values() for g in spec.groups})
    for group in groups:
        if group not in known_groups:
            raise UnknownName("device group", group, known_groups)
    for name in names:
        if name not in devices:
            raise UnknownName("device", name, list(devices))
    members = [n for g in groups for n, spec in devices.items() if g in spec.groups]
    return [devices[n] for n in dict.fromkeys([*names, *members])]


def inventory_path(explicit: str | Path | None = None) -> Path:
    return Path(explicit or os.environ.get("OFA_EDGE_INVENTORY") or "devices.toml")


def load_inventory(path: str | Path | None = None) -> dict[str, DeviceSpec]:
    """All devices by name, ``local`` included. TOML, or Ansible INI/YAML by content."""
    explicit = path is not None or "OFA_EDGE_INVENTORY" in os.environ
    file = inventory_path(path)
    devices: dict[str, DeviceSpec] = {}
    if file.is_file():
        text = file.read_text()
        tables = _parse_tables(file, text)
        devices = {n: parse_device(n, t, file.resolve().parent) for n, t in tables.items()}
    elif explicit:
        raise ConfigError(f"inventory {file} does not exist", hint="check --inventory / OFA_EDGE_INVENTORY")
    devices.setdefault("local", local_device())
    return devices


def _parse_tables(file: Path, text: str) -> dict[str, dict[str, Any]]:
    if file.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{file}: not valid TOML ({err})") from None
        unknown = sorted(set(data) - {"devices"})
        if unknown:
            raise ConfigError(f"{file}: unknown top-level key(s) {unknown}; devices go under [devices.NAME]")
        tables = data.get("devices", {})
        if not isinstance(tables, dict):
            raise ConfigError(f"{file}: [devices] must hold one table per device")
        return tables
    return parse_ansible(file, text)
