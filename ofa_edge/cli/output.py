"""All CLI printing: results to stdout (text, or one JSON document with --json), errors to stderr.

Progress goes to stderr (nothing under --json): for one device, ``stage`` lines and a tqdm bar
per step (``Output``); for several, one line per device (``DeviceLines``). Both offer
``stage(name, message)`` and ``counter(desc, unit)``, the ``Progress`` a device command reports to.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ofa_edge import __version__
from ofa_edge.errors import OfaEdgeError


class Progress(Protocol):
    """Where a command on one device reports its stages and counted steps."""

    def stage(self, name: str, message: str) -> None: ...

    def counter(self, desc: str, unit: str) -> Callable[[int, int], None]: ...


class _Silent:
    """A ``Progress`` that shows nothing: a device's work on a Ray farm node, away from the terminal."""

    def stage(self, name: str, message: str) -> None:
        """Nothing to show."""

    def counter(self, desc: str, unit: str) -> Callable[[int, int], None]:
        return lambda done, total: None


SILENT: Progress = _Silent()


class Output:
    """The one printer of a command (``json_mode``: ``--json``); also the ``Progress`` of a
    command on one device."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode

    def result(self, kind: str, data: dict[str, Any], text: str) -> None:
        """Print a command's result: ``text`` for people, or a versioned JSON document."""
        if self.json_mode:
            doc = {"schema": f"ofa-edge/{kind}/1", "ofa_edge_version": __version__, **data}
            print(json.dumps(doc))
        else:
            print(text)

    def error(self, err: OfaEdgeError | str) -> None:
        message = str(err)
        print(f"ofa-edge: error: {message}", file=sys.stderr)
        if self.json_mode:
            fields: dict[str, str | None] = {"message": message}
            if isinstance(err, OfaEdgeError):
                fields = {"reference": err.reference, "message": err.message, "hint": err.hint}
            self.result("error", {"error": fields}, "")

    def stage(self, name: str, message: str) -> None:
        """A ``[stage] message`` line on stderr (quiet under --json)."""
        if not self.json_mode:
            print(f"[{name}] {message}", file=sys.stderr, flush=True)

    def counter(self, desc: str, unit: str) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` callback drawing a bar with ETA on stderr (silent under
        --json); the bar appears on the first call and closes when ``done`` reaches ``total``."""
        if self.json_mode:
            return lambda done, total: None
        bar: Any = None

        def update(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(
                    desc=desc, unit=unit, total=total, initial=done, file=sys.stderr, dynamic_ncols=True
                )
            bar.total = total
            bar.update(done - bar.n)
            if done >= total:
                bar.close()

        return update


class DeviceLines:
    """One progress line per device on stderr while several run at once: on a terminal a line
    each that shows the device's latest status, or its step's bar; elsewhere (a log) a plain
    ``NAME: message`` line per status and per step started and finished. Quiet under --json."""

    def __init__(self, names: Sequence[str], json_mode: bool) -> None:
        self.quiet = json_mode
        self._bars: dict[str, Any] = {}
        self._lock = threading.Lock()
        if not json_mode and sys.stderr.isatty():
            from tqdm import tqdm

            self._bars = {
                name: tqdm(desc=name, position=i, bar_format="{desc}", file=sys.stderr, dynamic_ncols=True)
                for i, name in enumerate(names)
            }

    def status(self, name: str, message: str) -> None:
        """The device's line now says ``message``."""
        if self.quiet:
            return
        bar = self._bars.get(name)
        if bar is None:
            with self._lock:
                print(f"{name}: {message}", file=sys.stderr, flush=True)
            return
        bar.bar_format = "{desc}"
        bar.set_description_str(f"{name}: {message}")

    def device(self, name: str) -> Progress:
        """The ``Progress`` of device ``name``: its stages and steps land on its line."""
        return _DeviceLine(self, name)

    def counter(self, name: str, desc: str, unit: str) -> Callable[[int, int], None]:
        """``progress(done, total)`` of a step on the device's line (a log gets its start and end)."""
        started = False

        def update(done: int, total: int) -> None:
            nonlocal started
            bar = self._bars.get(name)
            if bar is not None:
                if not started:
                    bar.bar_format = None
                    bar.unit = unit
                    bar.set_description_str(f"{name}: {desc}", refresh=False)
                    bar.reset(total=total)
                bar.total = total
                bar.update(done - bar.n)
            elif not started or done >= total:
                self.status(name, f"{desc} {done}/{total} {unit}")
            started = True

        return update

    def close(self) -> None:
        """Leave every device's last line on the screen."""
        for bar in self._bars.values():
            bar.close()


@dataclass(frozen=True)
class _DeviceLine:
    """One device's ``Progress`` on its ``DeviceLines`` line."""

    lines: DeviceLines
    name: str

    def stage(self, stage: str, message: str) -> None:
        self.lines.status(self.name, f"[{stage}] {message}")

    def counter(self, desc: str, unit: str) -> Callable[[int, int], None]:
        return self.lines.counter(self.name, desc.strip(), unit)
