"""One error hierarchy: every failure a user can cause says what went wrong and what to do.

Each subclass mixes in the builtin a Python user would catch (``ValueError``, ``ConnectionError``
...), carries a stable ``reference`` (used as the JSON ``reference`` and a README anchor) and an
optional ``hint`` with the next step. The CLI prints ``str(err)``: one line, never a traceback.

Every error class is defined here, grouped in families; a family's ``exit_code`` is what the
``ofa-edge`` command exits with (:data:`EXIT_CODES` lists them), so scripts can tell a device
that is down from a budget no subnet meets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class OfaEdgeError(Exception):
    """Root of all ofa-edge errors."""

    reference = "ofa-edge-error"
    #: The ``ofa-edge`` exit status for this family (1: any error no family below claims).
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.fields = fields

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ConfigError(OfaEdgeError, ValueError):
    """An architecture, search space, option or input file outside what is allowed (exit 2, the
    status argparse gives a malformed command line)."""

    reference = "invalid-config"
    exit_code = 2


class UnknownName(OfaEdgeError, KeyError):
    """A registry lookup for a name that is not registered; suggests close matches."""

    reference = "unknown-name"
    exit_code = 3

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        import difflib

        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known)}"
        super().__init__(f"unknown {kind} {name!r}", hint=hint, kind=kind, name=name)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by its fields, not its constructor's arguments (the known names are not
        kept), so one raised on a Ray farm node comes back whole."""
        return (Exception.__new__, (type(self), self.message), self.__dict__)


class RegistryError(OfaEdgeError, RuntimeError):
    """A registry used wrongly (e.g. the same name registered twice)."""

    reference = "registry"


class WeightsError(OfaEdgeError):
    """Family: supernet weights that could not be fetched or loaded."""

    reference = "weights"
    exit_code = 7


class CheckpointError(WeightsError, ValueError):
    """A checkpoint file that cannot be read or does not fit the network."""

    reference = "bad-checkpoint"


class DownloadError(WeightsError, ConnectionError):
    """A file that could not be fetched from its URL."""

    reference = "download-failed"


class DeviceError(OfaEdgeError, RuntimeError):
    """Family: something went wrong on a device (a command failed or timed out, the agent or a
    push misbehaved)."""

    reference = "device-error"
    exit_code = 5


class DeviceConnectionError(DeviceError, ConnectionError):
    """Family: a device that could not be reached or logged in to."""

    reference = "device-connection"
    exit_code = 4


class DeviceUnreachable(DeviceConnectionError):
    """No connection to the device (down, wrong address, refused)."""

    reference = "device-unreachable"


class HostKeyError(DeviceConnectionError):
    """The SSH host key is unknown or has changed (strict checking is the default)."""

    reference = "host-key"


class AuthError(DeviceConnectionError, PermissionError):
    """The device refused the login."""

    reference = "auth-failed"


class AdbNotFound(DeviceError, FileNotFoundError):
    """The ``adb`` client program is not installed or not where the inventory says."""

    reference = "adb-not-found"


class CommandFailed(DeviceError):
    """A command on the device exited with an error."""

    reference = "command-failed"


class CommandTimeout(DeviceError, TimeoutError):
    """A command on the device did not finish in time."""

    reference = "command-timeout"


class DeviceBusy(DeviceError):
    """Another command holds the device's lock (it is measuring there) past the wait allowed."""

    reference = "device-busy"


class AgentError(DeviceError):
    """The agent answered with an error, died, or speaks another protocol."""

    reference = "agent-error"


class PlacementError(DeviceError):
    """A model that does not run wholly on the backend's accelerator (a provider or delegate
    fell back to the CPU, or took only part of the graph) where partial placement is not allowed."""

    reference = "partial-placement"


class BenchmarkOutputError(DeviceError, ValueError):
    """``benchmark_model`` printed no usable timing (it failed, or this is not its output)."""

    reference = "benchmark-output"


class DeployError(DeviceError):
    """A push that did not arrive intact or could not be measured."""

    reference = "deploy-failed"


class LutError(OfaEdgeError, ValueError):
    """A latency table that is malformed, truncated, too new, lacks an op, or cannot be found."""

    reference = "bad-latency-table"
    exit_code = 6


class ExportError(OfaEdgeError, RuntimeError):
    """Family: a subnet that could not be exported."""

    reference = "export-failed"
    exit_code = 8


class ExportCheckError(ExportError):
    """An exported model that failed its check; nothing was written under the requested name."""

    reference = "export-check-failed"


class ConverterMissing(ExportError, ImportError):
    """A model converter (litert-torch, ai-edge-quantizer) that is not installed."""

    reference = "converter-missing"


class InfeasibleError(OfaEdgeError, ValueError):
    """Budgets no subnet meets; ``fields['minimums']`` holds each binding constraint's minimum."""

    reference = "infeasible-budget"
    exit_code = 9


#: The ``ofa-edge`` exit status when the user interrupts it (Ctrl-C), as shells report SIGINT.
EXIT_INTERRUPTED = 130

#: Each family's exit status, for documentation and scripts (``main`` reads ``err.exit_code``).
EXIT_CODES: dict[int, type[OfaEdgeError]] = {
    cls.exit_code: cls
    for cls in (
        OfaEdgeError,
        ConfigError,
        UnknownName,
        DeviceConnectionError,
        DeviceError,
        LutError,
        WeightsError,
        ExportError,
        InfeasibleError,
    )
}


def fleet_exit_code(errors: Iterable[OfaEdgeError]) -> int:
    """The exit status of a command run on several devices: 0 when none failed, else the code of
    the most specific family every failure belongs to (all unreachable: 4; unreachable and a
    command failed: 5, the device family; a device and a table: 1), so one code tells scripts
    what went wrong everywhere, and each device's record says what went wrong there."""
    errors = list(errors)
    if not errors:
        return 0
    covering = [family for family in EXIT_CODES.values() if all(isinstance(e, family) for e in errors)]
    return min(covering, key=type(errors[0]).__mro__.index).exit_code
