"""One small interface to reach a device, whatever carries it (SSH, ADB, local subprocesses).

Commands are argument lists, never shell strings: transports that go through a remote shell
quote every argument (``shlex.join``), so device names, paths and model names with spaces,
``;``, ``$()`` or quotes are passed as data and never run. A long-lived ``Channel`` (one SSH exec,
one ``adb shell``, one subprocess) carries the agent's JSON lines for a whole session.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ofa_edge.errors import CommandFailed

DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RunResult:
    """What a finished command left: its exit code and output."""

    device: str
    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def shell_command(argv: Sequence[str], cwd: str | None = None) -> str:
    """The POSIX-shell line running ``argv`` (in ``cwd``) with every argument quoted."""
    if not argv:
        raise ValueError("empty command")
    line = shlex.join(str(a) for a in argv)
    return f"cd {shlex.quote(cwd)} && {line}" if cwd else line


class Channel(ABC):
    """A long-lived process on the device: lines to its stdin, lines from its stdout."""

    @abstractmethod
    def write_line(self, line: str) -> None:
        """Send one line (a newline is appended)."""

    @abstractmethod
    def read_line(self, timeout: float) -> str:
        """The next stdout line without its newline; ``CommandTimeout`` after ``timeout``
        seconds; ``DeviceUnreachable`` if the process ended or the link dropped."""

    @abstractmethod
    def close(self) -> None:
        """End the process (and its children) and release the link; safe to call twice."""

    @property
    @abstractmethod
    def stderr_tail(self) -> str:
        """The last lines the process wrote to stderr (for error messages)."""


class Transport(ABC):
    """How the host reaches one device. Connects lazily; ``with`` closes it."""

    def __init__(self, name: str, slowdown: float = 1.0) -> None:
        self.name = name
        self.slowdown = slowdown

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        check: bool = True,
        cwd: str | None = None,
    ) -> RunResult:
        """Run a command to completion within ``timeout`` desktop seconds (times the device's
        ``slowdown``); ``check`` raises ``CommandFailed`` on a non-zero exit."""
        return self._run(argv, timeout=timeout * self.slowdown, check=check, cwd=cwd)

    @abstractmethod
    def _run(self, argv: Sequence[str], *, timeout: float, check: bool, cwd: str | None) -> RunResult:
        """``run`` with the timeout already scaled to this device."""

    @abstractmethod
    def open_channel(self, argv: Sequence[str], *, cwd: str | None = None) -> Channel:
        """Start a long-lived process and return its line channel."""

    @abstractmethod
    def put(self, local: Path, remote: str) -> None:
        """Copy a host file to the device (parent folders are created)."""

    @abstractmethod
    def get(self, remote: str, local: Path) -> None:
        """Copy a device file to the host."""

    @abstractmethod
    def close(self) -> None:
        """Drop the connection; the next call reconnects."""

    def sha256(self, remote: str) -> str | None:
        """The file's sha256 on the device (``sha256sum``), or None if it does not exist."""
        res = self.run(["sha256sum", remote], check=False, timeout=120)
        if not res.ok:
            return None
        return res.stdout.split()[0] if res.stdout.split() else None

    def _failed(self, res: RunResult) -> CommandFailed:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        return CommandFailed(
            f"{self.name}: `{res.command}` exited with {res.exit_code}"
            + (f": {' | '.join(tail)}" if tail else ""),
            device=self.name,
            exit_code=res.exit_code,
        )

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
