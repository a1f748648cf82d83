"""Hardware classes: devices whose fingerprints match share one measured table.

Two devices are of one class when their fingerprints agree on what sets op latencies (CPU
architecture, model and cores, board, power mode) and their tables would be measured under the
same conditions (runtime and its version, precision, threads, backend). One member's table is
built op by op; every further member *joins*: it measures a few whole subnets against the class
table (``ofa_edge.lut.adapt`` with the common factor alone) and gets the class table at its own
speed, its own reference level and calibration. A member whose subnets the class table does not
predict (leave-one-out error above ``JOIN_MAX_LOO_PCT``) is told so and builds its own table.

Within one fleet command (``ClassBuilds``) the first device of each class builds and the others
wait for its table, so ten identical boards cost one build and nine joins. Joining is asked for
(``lut build --join-class``): a full build stays the default.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofa_edge.devices.backend import Backend, default_backend
from ofa_edge.devices.session import MeasuringSession, runtime_version
from ofa_edge.errors import LutError
from ofa_edge.lut.adapt import AdaptReport, adapt
from ofa_edge.lut.build import BuildProgress, build_table
from ofa_edge.lut.store import table_folders
from ofa_edge.lut.table import LatencyTable, SupernetRef

#: Fingerprint fields that set op latencies (``power_mode``: a Jetson's nvpmodel, when reported).
CLASS_FIELDS = ("arch", "cpu_model", "cores", "board", "power_mode")
#: Whole subnets a joining member measures (the issue's ceiling: 20).
JOIN_SAMPLES = 20
#: A member fits its class when the class table, rescaled, predicts its subnets this well
#: (leave-one-out mean error, %); above it the member builds its own table.
JOIN_MAX_LOO_PCT = 10.0


def hardware_class(
    fingerprint: dict[str, Any],
    runtime: str,
    version: str | None,
    precision: str,
    threads: int,
    backend: Backend,
) -> dict[str, Any]:
    """What two devices' tables must share to be one class's (see the module docstring)."""
    return {
        **{key: fingerprint.get(key) for key in CLASS_FIELDS},
        "runtime": runtime,
        "runtime_version": version,
        "precision": precision,
        "threads": threads,
        "backend": backend.to_dict(),
    }


def table_class(table: LatencyTable) -> dict[str, Any]:
    """The hardware class a table was measured in."""
    return hardware_class(
        table.device.fingerprint,
        table.runtime.name,
        table.runtime.version,
        table.precision,
        table.threads,
        table.backend or default_backend(table.runtime.name),
    )


def session_class(session: MeasuringSession, precision: str, threads: int) -> dict[str, Any]:
    """The hardware class of the session's device, for tables of ``precision`` and ``threads``."""
    fingerprint, runtime = session.fingerprint(), session.spec.runtime
    backend = session.spec.backend_for(runtime)
    return hardware_class(
        fingerprint, runtime, runtime_version(fingerprint, runtime), precision, threads, backend
    )


def class_table(
    cls: dict[str, Any],
    supernet: str,
    resolutions: Sequence[int],
    device: str,
    folders: list[Path] | None = None,
) -> Path | None:
    """A table of ``supernet`` built op by op (not adapted) on another device of class ``cls``
    that covers ``resolutions``, from the table search path; None if there is none."""
    pattern = f"*_{supernet}_{cls['precision']}_t{cls['threads']}.json"
    for folder in table_folders() if folders is None else folders:
        for path in sorted(folder.glob(pattern)):
            try:
                table = LatencyTable.load(path)
            except LutError:
                continue  # an unreadable table is nobody's class table
            if (
                table.device.name != device
                and table.adapted is None
                and table.supernet.id == supernet
                and set(resolutions) <= set(table.entries)
                and table_class(table) == cls
            ):
                return path
    return None


@dataclass(frozen=True)
class Membership:
    """How a device got its table: ``joined`` (the adaptation) or None (built op by op), and
    ``note``, why a member that tried to join built instead."""

    table: LatencyTable
    joined: AdaptReport | None = None
    class_table: Path | None = None
    note: str | None = None


class ClassBuilds:
    """One fleet command's class tables: the devices of a class take turns looking for their
    class table, so the first builds it while the others wait, then join it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._turns: dict[str, threading.Lock] = {}
        self._built: dict[str, Path] = {}

    def __reduce__(self) -> tuple[Any, ...]:
        """Sent to a Ray farm node, a fresh one: the turns are this process's threads, so a
        device there looks for its class table in its own host's store alone."""
        return (ClassBuilds, ())

    @contextlib.contextmanager
    def turn(self, cls: dict[str, Any]) -> Iterator[None]:
        """Held while a device of class ``cls`` looks for its class table or builds it."""
        with self._guard:
            lock = self._turns.setdefault(repr(sorted(cls.items())), threading.Lock())
        with lock:
            yield

    def built(self, cls: dict[str, Any]) -> Path | None:
        return self._built.get(repr(sorted(cls.items())))

    def record(self, cls: dict[str, Any], path: Path) -> None:
        self._built[repr(sorted(cls.items()))] = path


def class_member_table(
    session: MeasuringSession,
    supernet: SupernetRef,
    resolutions: Sequence[int],
    out: Path,
    *,
    precision: str,
    threads: int,
    classes: ClassBuilds | None = None,
    join_samples: int = JOIN_SAMPLES,
    progress: BuildProgress | None = None,
    joining: BuildProgress | None = None,
    **build: Any,
) -> Membership:
    """The device's table at ``out``: joined from its class's table (on the search path, or
    built by another device of this fleet command, ``classes``) when there is one and it fits,
    else built op by op (``build``: ``build_table``'s keywords). A build to resume is resumed.
    ``progress`` follows a build, ``joining`` a join (its whole-subnet timings)."""
    cls = session_class(session, precision, threads)
    name = session.spec.name

    def own() -> LatencyTable:
        return build_table(
            session,
            supernet,
            resolutions,
            out,
            precision=precision,
            threads=threads,
            progress=progress,
            **build,
        )

    with classes.turn(cls) if classes is not None else contextlib.nullcontext():
        mate = (classes.built(cls) if classes is not None else None) or class_table(
            cls, supernet.id, resolutions, name
        )
        if mate is None or out.exists():
            table = own()
            if classes is not None:
                classes.record(cls, out)
            return Membership(table)
    report = adapt(session, mate, out, samples=join_samples, per_type=False, progress=joining)
    if report.fit.loo_mape_pct <= JOIN_MAX_LOO_PCT:
        return Membership(report.table, report, mate)
    out.unlink()
    note = (
        f"{name} does not fit the class table {mate.name} (leave-one-out error "
        f"{report.fit.loo_mape_pct:.1f}% > {JOIN_MAX_LOO_PCT:g}%): building its own"
    )
    return Membership(own(), None, None, note)
