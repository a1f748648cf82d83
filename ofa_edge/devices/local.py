"""The host itself as a device: commands are subprocesses (no shell), files are copies.

``ProcessChannel`` (a subprocess with piped stdin/stdout and a bounded ``read_line``) also
carries the agent for transports that run a local client program (e.g. ``adb shell``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.devices.transport import Channel, RunResult, Transport
from ofa_edge.errors import CommandTimeout, DeviceUnreachable
from ofa_edge.files import sha256_file


class ProcessChannel(Channel):
    """A local subprocess as a line channel; reader threads make ``read_line`` time-bounded.

    ``command`` is what error messages show (e.g. the remote command an ``adb shell`` runs);
    ``hint`` is the next step they suggest when the process ends.
    """

    CLOSE_GRACE_S = 1.0  # after stdin closes, the process may exit on its own
    STDERR_TAIL_LINES = 20

    def __init__(
        self,
        argv: Sequence[str],
        device: str,
        *,
        command: str | None = None,
        hint: str | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.device, self.hint = device, hint
        self.command = command or " ".join(argv)
        try:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
                start_new_session=True,
                cwd=cwd,
                env=env,
                errors="replace",
            )
        except OSError as err:
            raise DeviceUnreachable(f"{device}: cannot start {argv[0]}: {err.strerror}") from None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=self.STDERR_TAIL_LINES)
        self._closed = False
        self._readers = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump_stdout(self) -> None:
        self._pump(self.proc.stdout, self._lines.put)
        self._lines.put(None)  # end of stream

    def _pump_stderr(self) -> None:
        self._pump(self.proc.stderr, self._stderr.append)

    @staticmethod
    def _pump(stream: IO[str] | None, sink: Callable[[str], object]) -> None:
        """Hand each line of ``stream`` to ``sink`` until its end, also when ``close`` closed it
        under a reader that had not reached the end yet (a loaded host)."""
        assert stream is not None
        with contextlib.suppress(ValueError, OSError):  # closed under us: the end all the same
            for line in stream:
                sink(line.rstrip("\r\n"))

    def write_line(self, line: str) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (ValueError, OSError):
            raise self._ended() from None

    def read_line(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise CommandTimeout(
                f"{self.device}: no line from `{self.command}` within {timeout:g} s",
                hint="if the device is slow, raise its slowdown in the inventory; the process's stderr: "
                + (self._tail() or "(empty)"),
                device=self.device,
            ) from None
        if line is None:
            self._lines.put(None)  # stay ended for later reads
            raise self._ended()
        return line

    def _tail(self) -> str:
        return " | ".join(list(self._stderr)[-3:])

    def _ended(self) -> DeviceUnreachable:
        """The error for a process that is gone: its exit code and last stderr lines."""
        try:
            code: int | None = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self._readers[1].join(self.CLOSE_GRACE_S)  # its last words may still be in the pipe
        tail = self._tail()
        return DeviceUnreachable(
            f"{self.device}: `{self.command}` ended (exit code {code})" + (f": {tail}" if tail else ""),
            hint=self.hint,
            device=self.device,
            exit_code=code,
        )

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    def close(self) -> None:
        """Close stdin, give the process a moment, then end its whole process group."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(self.CLOSE_GRACE_S)
        # The whole group: a dead agent's measuring child, or what an adb client left running.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, 9)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        for reader in self._readers:  # the killed group's pipes are at their end: let them drain
            reader.join(self.CLOSE_GRACE_S)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _local_path(path: str) -> Path:
    return Path(os.path.expanduser(path))


class LocalTransport(Transport):
    """This machine. The agent runs under the host's own Python unless the inventory says else."""

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec.name, spec.slowdown)
        self.spec = spec
        self._channels: list[ProcessChannel] = []

    def _run(self, argv: Sequence[str], *, timeout: float, check: bool, cwd: str | None) -> RunResult:
        command = " ".join(argv)
        try:
            proc = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=_local_path(cwd) if cwd else None,
            )
        except subprocess.TimeoutExpired:
            raise CommandTimeout(
                f"{self.name}: `{command}` did not finish within {timeout:g} s",
                hint="if the device is slow, raise its slowdown in the inventory",
            ) from None
        except OSError as err:
            res = RunResult(self.name, command, 127, "", f"{argv[0]}: {err.strerror}")
        else:
            res = RunResult(self.name, command, proc.returncode, proc.stdout, proc.stderr)
        if check and not res.ok:
            raise self._failed(res)
        return res

    def open_channel(self, argv: Sequence[str], *, cwd: str | None = None) -> Channel:
        channel = ProcessChannel(argv, self.name, cwd=_local_path(cwd) if cwd else None)
        self._channels.append(channel)
        return channel

    def put(self, local: Path, remote: str) -> None:
        dest = _local_path(remote)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)

    def get(self, remote: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_local_path(remote), local)

    def sha256(self, remote: str) -> str | None:
        path = _local_path(remote)
        return sha256_file(path) if path.is_file() else None

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()

    @property
    def python(self) -> str:
        """The interpreter for the agent: the inventory's, else the one running ofa-edge."""
        return sys.executable if self.spec.python == DeviceSpec.python else self.spec.python
