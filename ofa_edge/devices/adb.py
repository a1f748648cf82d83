"""Reach an Android phone through the real ``adb`` client (USB, or Wi-Fi after ``adb connect``).

Every call is one ``adb`` process: ``adb -s SERIAL shell -T -- LINE`` runs a command (the remote
exit code comes back through the shell protocol), ``push``/``pull`` copy files, and a
``Channel`` is one long-lived ``adb shell -T`` with pipes. adb joins its arguments with spaces
and hands them to the phone's shell, so ``LINE`` is one string quoted here (``shell_command``).
``server_port`` selects a private adb server (``ANDROID_ADB_SERVER_PORT``); with ``server_host``
every call goes to the adb server of another machine, with the phones attached there
(``adb -H HOST -P PORT``; that server must listen on the network: ``adb -a``). adb exits 0 when
the link drops before the exit code arrives, so a zero exit is confirmed with ``adb get-state``.

When an ``adb shell`` ends early, adbd only sends SIGHUP to the command it started, which a
program may ignore, and its children never get it. So every command first tells its pid on
stderr (``ofa-edge-pid N``, stripped from what callers see) and then ``exec``s in place; on a
timeout, or when a channel is closed while its process still runs, that process and its
children are killed on the phone (``kill -9``) before the local adb client is.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ofa_edge.devices.local import ProcessChannel
from ofa_edge.devices.spec import AdbOptions, DeviceSpec
from ofa_edge.devices.transport import RunResult, Transport, shell_command
from ofa_edge.errors import AdbNotFound, CommandTimeout, DeviceError, DeviceUnreachable

ADB_TIMEOUT_S = 30.0  # one bookkeeping call (devices, connect, get-state); the first starts the server
CONNECT_WAIT_S = 10.0  # how long a just-connected phone may stay "offline"/"connecting"
TRANSFER_TIMEOUT_S = 600.0  # one push or pull

_TCP_SERIAL = re.compile(r"^\S+:\d+$")
_PID_LINE = re.compile(r"ofa-edge-pid (\d+)")
KILL_TIMEOUT_S = 10.0  # the `kill` sent to the phone for a command that overran or was abandoned
_HINT_NOT_FOUND = (
    "plug the phone in with USB debugging on (or `adb connect HOST:PORT`), then check `adb devices`"
)
_NO_SERVER = re.compile(r"cannot connect to daemon")
# adb's own complaints (last stderr line) -> what to do; anything else is the command's output.
_ADB_FAILURES: tuple[tuple[re.Pattern[str], type[DeviceError], str], ...] = (
    (re.compile(r"device '.*' not found|no devices/emulators found"), DeviceUnreachable, _HINT_NOT_FOUND),
    (
        re.compile(r"device offline"),
        DeviceUnreachable,
        "reconnect the phone (cable or Wi-Fi), or run `adb reconnect offline`, then check `adb devices`",
    ),
    (
        re.compile(r"unauthorized|authorizing|failed to authenticate"),
        DeviceUnreachable,
        "unlock the phone and accept its 'Allow USB debugging?' prompt for this computer's RSA "
        "key (tick 'Always allow'), then check that `adb devices` lists it as 'device'",
    ),
    (
        re.compile(r"^error: closed$"),
        DeviceUnreachable,
        "the phone dropped the connection; check `adb devices`",
    ),
    (
        re.compile(r"more than one device"),
        DeviceError,
        'set serial = "..." for this device in the inventory (see `adb devices`)',
    ),
    (
        _NO_SERVER,
        DeviceError,
        "the adb server did not start: try `adb start-server` (with the same server_port)",
    ),
)


class AdbTransport(Transport):
    """A phone reached with the ``adb`` client; connects (``adb connect``) on the first call."""

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec.name, spec.slowdown)
        self.options = spec.adb or AdbOptions()
        self._env = dict(os.environ)
        if self.options.server_port is not None:
            self._env["ANDROID_ADB_SERVER_PORT"] = str(self.options.server_port)
        self._binary: str | None = None
        self._ready = False
        self._connect_lock = threading.Lock()
        self._channels: list[ProcessChannel] = []

    # --- the Transport verbs --------------------------------------------------------------

    def _run(self, argv: Sequence[str], *, timeout: float, check: bool, cwd: str | None) -> RunResult:
        """Run ``argv`` on the phone with the shell protocol (exit code, separate stderr); on a
        timeout the command is killed on the phone."""
        command = shell_command(argv, cwd)
        self._connect()
        proc = self._call(
            self._adb("shell", "-T", "--", _tracked(argv, cwd)),
            timeout,
            what=command,
            on_timeout=lambda stderr: self._kill_remote(_split_pid(stderr)[0]),
        )
        self._raise_adb_failure(proc)
        if proc.returncode == 0:
            # adb also exits 0 when the link drops before the exit code arrives.
            self._check_online(command)
        stderr = _split_pid(proc.stderr)[1]
        res = RunResult(self.name, command, proc.returncode, proc.stdout, stderr)
        if check and not res.ok:
            raise self._failed(res)
        return res

    def open_channel(self, argv: Sequence[str], *, cwd: str | None = None) -> ProcessChannel:
        """Start ``argv`` under one ``adb shell -T`` whose pipes carry the lines."""
        command = shell_command(argv, cwd)
        self._connect()
        channel = AdbChannel(
            self,
            self._adb("shell", "-T", "--", _tracked(argv, cwd)),
            command=command,
            hint="check `adb devices`; if the phone is there, run the command by hand to see why it stopped",
        )
        self._channels.append(channel)
        return channel

    def put(self, local: Path, remote: str) -> None:
        """``adb push`` after creating the remote parent folder."""
        parent = posixpath.dirname(remote)
        if parent:
            self.run(["mkdir", "-p", parent])
        self._transfer("push", str(local), remote)

    def get(self, remote: str, local: Path) -> None:
        """``adb pull`` into ``local`` (its parent folder is created)."""
        local.parent.mkdir(parents=True, exist_ok=True)
        self._transfer("pull", remote, str(local))

    def close(self) -> None:
        """End the channels opened here; the next call checks the connection again."""
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self._ready = False

    # --- adb plumbing ---------------------------------------------------------------------

    def _adb(self, *args: str, device: bool = True) -> list[str]:
        """The adb command line: the resolved binary, ``-s SERIAL`` for device commands, args."""
        if self._binary is None:
            found = shutil.which(self.options.adb)
            if found is None:
                raise AdbNotFound(
                    f"{self.name}: the adb client {self.options.adb!r} was not found",
                    hint="install Android platform-tools (Debian/Ubuntu: `apt install adb`) or set "
                    f'adb = "/path/to/adb" under [devices.{self.name}]',
                    device=self.name,
                )
            self._binary = found
        opts = self.options
        server = ["-H", opts.server_host, "-P", str(opts.server_port or 5037)] if opts.server_host else []
        serial = ["-s", opts.serial] if device and opts.serial else []
        return [self._binary, *server, *serial, *args]

    def _call(
        self,
        argv: list[str],
        timeout: float,
        *,
        what: str,
        on_timeout: Callable[[str], None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """One adb process to completion. On timeout ``on_timeout`` gets the stderr so far while
        the link is still up, then the adb process is killed."""
        proc = subprocess.Popen(
            argv, env=self._env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as expired:
            if on_timeout is not None:
                on_timeout(_text(expired.stderr))
            proc.kill()
            proc.communicate()
            raise CommandTimeout(
                f"{self.name}: `{what}` did not finish within {timeout:g} s",
                hint="check that the phone is awake and not throttling, or raise its slowdown (inventory)",
                device=self.name,
                timeout=timeout,
            ) from None
        return subprocess.CompletedProcess(argv, proc.returncode, _text(out), _text(err))

    def _kill_remote(self, pid: int | None) -> None:
        """Kill a command this transport started on the phone, and its children (best effort:
        the phone may be gone already)."""
        if pid is None:
            return
        line = f"pkill -9 -P {pid}; kill -9 {pid}"
        with contextlib.suppress(CommandTimeout):
            self._call(self._adb("shell", "-T", "--", line), KILL_TIMEOUT_S, what=line)

    def _raise_adb_failure(self, proc: subprocess.CompletedProcess[str]) -> None:
        """Turn adb's own errors (device missing, offline, unauthorized ...) into ours."""
        if proc.returncode == 0:
            return
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        # adb's complaint is its last line, or an "error: " line followed by advice.
        said = [*lines[-1:], *(line for line in lines if line.startswith(("error: ", "adb: error: ")))]
        for line in said:
            for pattern, error, hint in _ADB_FAILURES:
                if pattern is _NO_SERVER and self.options.server_host:  # adb never starts a remote one
                    error, hint = DeviceUnreachable, self._remote_server_hint()
                if pattern.search(line):
                    raise error(
                        f"{self.name}: adb: {line.removeprefix('adb: ')}", hint=hint, device=self.name
                    )

    def _devices(self) -> dict[str, str]:
        """``adb devices``: serial -> state (``device``, ``offline``, ``unauthorized`` ...)."""
        proc = self._call(self._adb("devices", device=False), ADB_TIMEOUT_S, what="adb devices")
        self._raise_adb_failure(proc)
        rows = (line.split("\t", 1) for line in proc.stdout.splitlines() if "\t" in line)
        return {serial: state.strip() for serial, state in rows}

    def _connect(self) -> None:
        """Make sure the phone is listed as ``device``; ``adb connect`` a HOST:PORT serial first.

        Commands run from several threads at once: one connects, the others wait for it (a
        second thread would otherwise see the half-made link as "offline" and give up).
        """
        with self._connect_lock:
            self._connect_once()

    def _connect_once(self) -> None:
        if self._ready:
            return
        serial = self.options.serial
        if serial is None:  # adb picks the only phone, or says why it cannot
            self._ready = True
            return
        state = self._devices().get(serial)
        tcp = _TCP_SERIAL.match(serial) is not None
        if state is None and tcp:
            proc = self._call(self._adb("connect", serial, device=False), ADB_TIMEOUT_S, what="adb connect")
            said = " ".join((proc.stdout + proc.stderr).split())
            # "failed to authenticate": attached but unauthorized, which the state check reports.
            if not said.startswith(("connected to", "already connected to", "failed to authenticate")):
                raise DeviceUnreachable(
                    f"{self.name}: `adb connect {serial}` failed: {said or f'exit code {proc.returncode}'}",
                    hint="check the address and that wireless debugging (or `adb tcpip PORT`) is on",
                    device=self.name,
                )
        # A network phone is "connecting"/"offline" until its handshake is done (ours, or one
        # another adb client began).
        deadline = time.monotonic() + CONNECT_WAIT_S
        while tcp and state in (None, "connecting", "offline") and time.monotonic() < deadline:
            time.sleep(0.05)
            state = self._devices().get(serial)
        if state != "device":
            hint = _HINT_NOT_FOUND if state is None else self._hint_for(f"device {state}")
            raise DeviceUnreachable(
                f"{self.name}: adb device {serial!r} is {state or 'not attached'}",
                hint=hint,
                device=self.name,
            )
        self._ready = True

    def _remote_server_hint(self) -> str:
        host, port = self.options.server_host, self.options.server_port or 5037
        return (
            f"start the adb server on {host} listening on the network (`adb -a -P {port} server "
            "nodaemon` there, with the phone attached), or fix server_host/server_port in the inventory"
        )

    @staticmethod
    def _hint_for(text: str) -> str:
        return next((hint for pattern, _, hint in _ADB_FAILURES if pattern.search(text)), _HINT_NOT_FOUND)

    def _check_online(self, what: str) -> None:
        """Raise ``DeviceUnreachable`` unless ``adb get-state`` still says ``device``."""
        proc = self._call(self._adb("get-state"), ADB_TIMEOUT_S, what="adb get-state")
        if proc.stdout.strip() != "device":
            self._ready = False
            said = " ".join((proc.stdout + proc.stderr).split()) or f"exit code {proc.returncode}"
            raise DeviceUnreachable(
                f"{self.name}: the phone went away during `{what}` (adb get-state: {said})",
                hint=self._hint_for(said),
                device=self.name,
            )

    def _transfer(self, verb: str, src: str, dst: str) -> None:
        self._connect()
        label = shlex.join(["adb", verb, src, dst])
        proc = self._call(self._adb(verb, src, dst), TRANSFER_TIMEOUT_S, what=label)
        self._raise_adb_failure(proc)
        if proc.returncode != 0:
            self._check_online(label)
            raise self._failed(RunResult(self.name, label, proc.returncode, proc.stdout, proc.stderr))


class AdbChannel(ProcessChannel):
    """A channel whose remote process is killed on the phone when it outlives ``close()``'s
    grace period: adbd's SIGHUP alone may not end it."""

    def __init__(self, transport: AdbTransport, argv: list[str], *, command: str, hint: str) -> None:
        self.transport = transport
        self.remote_pid: int | None = None  # set by the stderr reader from the first line
        super().__init__(argv, transport.name, command=command, hint=hint, env=transport._env)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        pid, rest = _split_pid(self.proc.stderr.readline())
        self.remote_pid = pid
        if rest:
            self._stderr.append(rest.rstrip("\r\n"))
        super()._pump_stderr()

    def close(self) -> None:
        """Close stdin and give the process its grace period; if it still runs, kill it on the
        phone, then end the local adb client."""
        if not self._closed:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(self.CLOSE_GRACE_S)
            if self.proc.poll() is None:
                self.transport._kill_remote(self.remote_pid)
        super().close()


def _tracked(argv: Sequence[str], cwd: str | None) -> str:
    """The shell line that reports its pid on stderr, then becomes ``argv`` (same pid)."""
    return "echo ofa-edge-pid $$ >&2; " + shell_command(["exec", *argv], cwd)


def _split_pid(stderr: str) -> tuple[int | None, str]:
    """The pid a ``_tracked`` line reported and the rest of its stderr."""
    first, _, rest = stderr.partition("\n")
    match = _PID_LINE.fullmatch(first.strip())
    return (int(match.group(1)), rest) if match else (None, stderr)


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace").replace("\r\n", "\n")
