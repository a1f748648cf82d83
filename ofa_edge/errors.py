"""One error hierarchy: every failure a user can cause says what went wrong and what to do.

Each subclass mixes in the builtin a Python user would catch (``ValueError``, ``ConnectionError``
...), carries a stable ``reference`` (used as the JSON ``reference`` and a README anchor) and an
optional ``hint`` with the next step. The CLI prints ``str(err)``: one line, never a traceback.
"""

from __future__ import annotations

from typing import Any


class OfaEdgeError(Exception):
    """Root of all ofa-edge errors."""

    reference = "ofa-edge-error"

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.fields = fields

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ConfigError(OfaEdgeError, ValueError):
    """An architecture, search space or option outside what is allowed."""

    reference = "invalid-config"


class UnknownName(OfaEdgeError, KeyError):
    """A registry lookup for a name that is not registered; suggests close matches."""

    reference = "unknown-name"

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        import difflib

        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known)}"
        super().__init__(f"unknown {kind} {name!r}", hint=hint, kind=kind, name=name)


class RegistryError(OfaEdgeError, RuntimeError):
    """A registry used wrongly (e.g. the same name registered twice)."""

    reference = "registry"


class CheckpointError(OfaEdgeError, ValueError):
    """A checkpoint file that cannot be read or does not fit the network."""

    reference = "bad-checkpoint"


class DownloadError(OfaEdgeError, ConnectionError):
    """A file that could not be fetched from its URL."""

    reference = "download-failed"
