"""A test bed, not for production use: a real OpenSSH "device" on loopback, so the SSH transport
is tested against the real thing.

``SshDevice`` starts a real, private ``sshd`` process (it and its sessions are killed on
``stop``) on a 127.0.0.x address and a free port, with its own host key, client key, config and
login account (own HOME, ``/bin/sh``, a ``python3`` that has numpy and onnxruntime first on PATH),
optionally inside a CPU-quota cgroup that makes it as slow as a small board. The account lives in
a copy of ``/etc/passwd`` bind-mounted in a private mount namespace for this sshd only: the
host's files stay untouched.

It needs root (a private sshd, ``unshare --mount``, the bind mount), OpenSSH's ``/usr/sbin/sshd``
and, for ``cpu_quota``, a writable cgroup hierarchy under ``/sys/fs/cgroup`` (v2 ``cpu.max`` or
v1 CFS), where it creates and removes one cgroup per device: run it only on a disposable test
machine or container. ``sshd_unavailable`` says why it cannot run here (the tests' skip reason).
It ships in the package so that tests and benchmarks share it; nothing in ofa-edge's pipeline
imports it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ofa_edge.devices.spec import DeviceSpec, SshOptions

SSHD = Path("/usr/sbin/sshd")
DEVICE_USER = "ofa-device"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000
_LISTENING = "Server listening on"
# Runs as the (private-namespace) root: swap in the device's passwd, then become sshd (same pid).
_LAUNCH = 'mount --bind "$1" /etc/passwd && exec "$2" -D -f "$3" -E "$4"'


class SshDeviceError(RuntimeError):
    """The test device could not be started, changed or stopped cleanly."""


def sshd_unavailable() -> str | None:
    """Why a real sshd device cannot run on this machine (a skip reason), or None if it can."""
    if not SSHD.is_file():
        return f"{SSHD} is not installed (apt-get install openssh-server)"
    if os.geteuid() != 0:
        return "a real sshd test device needs root (private sshd, mount namespace, cgroups)"
    return None


class SshDevice:
    """One fake edge device: a real sshd reached with key auth and strict host-key checking.

    Example::

        with SshDevice(host="127.0.0.2", cpu_quota=0.25) as dev:
            spec = dev.device_spec("pi")
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        cpu_quota: float | None = None,
        root: Path | None = None,
        python: str = sys.executable,
        start_timeout: float = 10.0,
    ) -> None:
        """``cpu_quota`` is a fraction of one core (0.25: a slow board); ``root`` holds the keys,
        config, log and HOME (a fresh temporary folder, removed at stop, if None); ``python`` is
        the interpreter the device's ``python3`` runs."""
        address = ipaddress.ip_address(host)
        if address.version != 4 or not address.is_loopback:
            raise ValueError(f"host={host!r}: a test device listens on 127.0.0.0/8 only")
        if cpu_quota is not None and not 0.01 <= cpu_quota <= 64:
            raise ValueError(f"cpu_quota={cpu_quota!r} must be a fraction of one core in 0.01..64")
        if root is not None and any(c.isspace() for c in str(root)):
            raise ValueError(f"root={str(root)!r}: sshd_config paths must not contain whitespace")
        self.host = host
        self.port = 0
        self.user = DEVICE_USER
        self.cpu_quota = cpu_quota
        self.python = python
        self.start_timeout = start_timeout
        self._given_root = root
        self._root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._mount_ns: str | None = None
        self._cgroup: Path | None = None

    # -- files ---------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The folder with this device's keys, config, log and HOME."""
        if self._root is None:
            raise SshDeviceError("the device is not started")
        return self._root

    @property
    def home(self) -> Path:
        """The device account's HOME (a host folder: tests may look inside)."""
        return self.root / "home"

    @property
    def _sshd_files(self) -> Path:
        """The host folder with sshd's host key, authorized keys and config."""
        return self.root

    @property
    def _sshd_view(self) -> str:
        """``_sshd_files`` as sshd sees it (the same folder, unless sshd runs in a chroot)."""
        return str(self.root)

    @property
    def client_key(self) -> Path:
        """The private key the device accepts."""
        return self.root / "client_ed25519"

    @property
    def host_public_key(self) -> Path:
        """The device's current public host key (``ssh-keygen -lf`` gives its fingerprint)."""
        return self._sshd_files / "host_ed25519.pub"

    @property
    def known_hosts(self) -> Path:
        """A known_hosts file that trusts this device's host key as it was at start."""
        return self.root / "known_hosts"

    @property
    def untrusted_known_hosts(self) -> Path:
        """An empty known_hosts file: this device's host key is unknown to it."""
        return self.root / "known_hosts.empty"

    @property
    def log(self) -> Path:
        """sshd's log (``-E``)."""
        return self.root / "sshd.log"

    def device_spec(self, name: str = "sshd-device", **overrides: Any) -> DeviceSpec:
        """A ``DeviceSpec`` reaching this device with its client key and trusted host key.

        ``overrides`` may name ``SshOptions`` fields (``key``, ``known_hosts``, ``port``,
        ``connect_timeout`` ...) or ``DeviceSpec`` fields (``threads``, ``workdir`` ...).
        """
        if not self.port:
            raise SshDeviceError("the device is not started")
        ssh_fields = {f.name for f in dataclasses.fields(SshOptions)}
        ssh = SshOptions(
            host=self.host,
            port=self.port,
            user=self.user,
            key=self.client_key,
            known_hosts=self.known_hosts,
            connect_timeout=5.0,
        )
        ssh = dataclasses.replace(ssh, **{k: v for k, v in overrides.items() if k in ssh_fields})
        quota = f", {self.cpu_quota:g} CPU" if self.cpu_quota else ""
        spec: dict[str, Any] = {"description": f"test sshd on {self.host}:{self.port}{quota}"}
        spec.update({k: v for k, v in overrides.items() if k not in ssh_fields})
        return DeviceSpec(name=name, transport="ssh", ssh=ssh, **spec)

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Create keys, account and config, start sshd and wait (bounded) until it answers."""
        reason = sshd_unavailable()
        if reason:
            raise SshDeviceError(reason)
        if self._proc is not None:
            raise SshDeviceError("the device is already started")
        self._root = self._given_root or Path(tempfile.mkdtemp(prefix="ofa-edge-sshd-"))
        try:
            self._prepare_files()
            self._launch()
        except BaseException:
            with suppress(SshDeviceError):
                self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill sshd and every process of its sessions, remove the cgroup and temporary files.

        Every wait is bounded; anything that survives is reported as ``SshDeviceError``.
        """
        survivors = self._kill(self._device_pids)
        if self._proc is not None:
            with suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=2)
        self._proc = None
        cgroup_left = self._remove_cgroup()
        if self._root is not None and self._given_root is None:
            shutil.rmtree(self._root, ignore_errors=True)
        self._root, self._mount_ns, self.port = None, None, 0
        if survivors or cgroup_left:
            raise SshDeviceError(f"teardown left processes {sorted(survivors)} / cgroup {cgroup_left}")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- changing a running device --------------------------------------------------------------

    def regenerate_host_key(self) -> None:
        """Give the device a new host key (as a reinstall would) and wait until sshd serves it.

        ``known_hosts`` keeps the old key, so clients now see a changed host key.
        """
        proc = self._running()
        starts = self._log_text().count(_LISTENING)
        for suffix in ("", ".pub"):
            (self._sshd_files / f"host_ed25519{suffix}").unlink()
        _keygen(self._sshd_files / "host_ed25519")
        proc.send_signal(signal.SIGHUP)  # sshd re-executes itself and reads the new key
        deadline = time.monotonic() + self.start_timeout
        while self._log_text().count(_LISTENING) <= starts:
            if time.monotonic() > deadline:
                raise SshDeviceError(f"sshd did not restart within {self.start_timeout:g} s")
            time.sleep(0.02)
        self._wait_ready(deadline)

    def kill_sessions(self) -> int:
        """Kill every live session (as a dropped link or a device reboot would); sshd keeps
        listening. Returns how many processes were killed."""
        listener = self._running().pid
        sessions = self._device_pids() - {listener}
        left = self._kill(lambda: self._device_pids() & sessions)
        if left:
            raise SshDeviceError(f"session processes {sorted(left)} survived SIGKILL")
        return len(sessions)

    def tcp_ports(self) -> set[int]:
        """Local ports of the TCP sockets that sshd and its sessions hold: as a jump host, these
        include the connections it opened onward to the devices behind it."""
        sockets = set()
        for pid in self._device_pids():
            with suppress(OSError):
                for fd in os.scandir(f"/proc/{pid}/fd"):
                    with suppress(OSError):
                        sockets.add(os.readlink(fd.path))
        rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        return {int(row[1].rsplit(":", 1)[1], 16) for row in rows if f"socket:[{row[9]}]" in sockets}

    # -- internals -----------------------------------------------------------------------------

    def _prepare_files(self) -> None:
        """The account (a ``python3`` wrapper, a passwd copy), keys and a checked sshd config."""
        root = self.root
        self.home.mkdir(parents=True, exist_ok=True)
        (root / "bin").mkdir(exist_ok=True)
        python3 = root / "bin" / "python3"
        python3.write_text(f'#!/bin/sh\nexec {shlex.quote(self.python)} "$@"\n')
        python3.chmod(0o755)
        (root / "passwd").write_text(passwd_with_account(Path("/etc/passwd").read_text(), self.home))
        self._write_sshd_files(f"{root / 'bin'}:/usr/local/bin:/usr/bin:/bin")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
        check = subprocess.run(
            [str(SSHD), "-t", "-f", str(root / "sshd_config")],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if check.returncode:
            raise SshDeviceError(f"sshd -t rejected the config: {check.stderr.strip()}")

    def _write_sshd_files(self, path: str, **env: str) -> None:
        """Host and client keys, authorized keys and ``sshd_config`` (sessions get ``PATH`` and
        ``env``) in ``_sshd_files``; picks the port."""
        files, view = self._sshd_files, self._sshd_view
        files.mkdir(parents=True, exist_ok=True)
        _keygen(files / "host_ed25519")
        _keygen(self.client_key)
        shutil.copyfile(self.client_key.with_suffix(".pub"), files / "authorized_keys")
        self.untrusted_known_hosts.write_text("")
        self.port = _free_port(self.host)
        (files / "sshd_config").write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {self.host}",
                    f"HostKey {view}/host_ed25519",
                    f"PidFile {view}/sshd.pid",
                    f"AuthorizedKeysFile {view}/authorized_keys",
                    f"AllowUsers {DEVICE_USER}",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UseDNS no",
                    "PrintMotd no",
                    "SetEnv " + " ".join(f"{k}={v}" for k, v in {"PATH": path, **env}.items()),
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )

    def _launch_argv(self) -> list[str]:
        """The command that starts sshd in a private mount namespace (a private /etc/passwd)."""
        root = self.root
        launch = ["/bin/sh", "-c", _LAUNCH, "sh", str(root / "passwd"), str(SSHD)]
        config = [str(root / "sshd_config"), str(self.log)]
        return ["unshare", "--mount", "--propagation", "private", *launch, *config]

    def _launch(self) -> None:
        if self.cpu_quota is not None:
            self._cgroup = _make_cpu_cgroup(f"ofa-edge-sshd-{os.getpid()}-{self.port}", self.cpu_quota)
        # setpriv: sshd dies with us even if we are killed.
        with open(self.root / "sshd.out", "wb") as out:
            self._proc = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", *self._launch_argv()],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        if self._cgroup is not None:
            (self._cgroup / "cgroup.procs").write_text(str(self._proc.pid))  # children inherit it
        self._wait_ready(time.monotonic() + self.start_timeout)
        mount_ns = os.readlink(f"/proc/{self._proc.pid}/ns/mnt")
        if mount_ns == os.readlink("/proc/self/ns/mnt"):
            raise SshDeviceError("sshd did not get its own mount namespace")
        self._mount_ns = mount_ns
        key_type, key_b64 = self.host_public_key.read_text().split()[:2]
        self.known_hosts.write_text(f"[{self.host}]:{self.port} {key_type} {key_b64}\n")

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            raise SshDeviceError(f"sshd is not running; log: {self._log_tail()}")
        return self._proc

    def _wait_ready(self, deadline: float) -> None:
        """Until the port answers with an SSH banner (bounded by ``deadline``)."""
        while time.monotonic() < deadline:
            self._running()
            with suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5) as s:
                if s.recv(64).startswith(b"SSH-2.0-"):
                    return
            time.sleep(0.02)
        raise SshDeviceError(
            f"sshd on {self.host}:{self.port} sent no banner within {self.start_timeout:g} s; "
            f"log: {self._log_tail()}"
        )

    def _device_pids(self) -> set[int]:
        """sshd and everything its sessions started: all processes in its mount namespace."""
        if self._mount_ns is None:  # not yet (or never) up: only the launcher itself
            return {self._proc.pid} if self._proc is not None and self._proc.poll() is None else set()
        pids = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/mnt") == self._mount_ns:
                        pids.add(int(entry))
        return pids

    def _kill(self, targets: Callable[[], set[int]], timeout: float = 5.0) -> set[int]:
        """SIGKILL ``targets()`` until none is left or ``timeout`` passes; returns survivors."""
        deadline = time.monotonic() + timeout
        while (pids := targets() - {os.getpid()}) and time.monotonic() < deadline:
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
            if self._proc is not None:
                self._proc.poll()  # reap our own child so it does not linger as a zombie
        return pids

    def _remove_cgroup(self) -> Path | None:
        """rmdir the CPU cgroup (bounded retries while the killed tasks leave); None when gone."""
        cgroup, deadline = self._cgroup, time.monotonic() + 3
        while cgroup is not None and cgroup.exists():
            try:
                cgroup.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    return cgroup
                time.sleep(0.05)
        self._cgroup = None
        return None

    def _log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _log_tail(self) -> str:
        out = self.root / "sshd.out"
        text = self._log_text() + (out.read_text(errors="replace") if out.exists() else "")
        return " | ".join(text.strip().splitlines()[-5:]) or "(empty)"


def passwd_with_account(passwd: str, home: Path | str) -> str:
    """``passwd`` (a passwd file's text) with the device account, uid 0, HOME ``home``, /bin/sh."""
    accounts = [line for line in passwd.splitlines() if not line.startswith(f"{DEVICE_USER}:")]
    accounts.append(f"{DEVICE_USER}:x:0:0:ofa-edge test device:{home}:/bin/sh")
    return "\n".join(accounts) + "\n"


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ofa-edge-test", "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _make_cpu_cgroup(name: str, quota: float) -> Path:
    """A cgroup capping its processes at ``quota`` cores (cgroup v2 ``cpu.max`` or v1 CFS)."""
    quota_us = max(1000, round(quota * CFS_PERIOD_US))
    v2 = (CGROUP_ROOT / "cgroup.controllers").exists()
    path = CGROUP_ROOT / name if v2 else CGROUP_ROOT / "cpu" / name
    path.mkdir()
    try:
        if v2:
            (path / "cpu.max").write_text(f"{quota_us} {CFS_PERIOD_US}")
        else:
            (path / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (path / "cpu.cfs_quota_us").write_text(str(quota_us))
    except OSError as err:
        path.rmdir()
        raise SshDeviceError(f"cannot set a CPU quota in {path}: {err}") from err
    return path
