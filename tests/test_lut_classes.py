"""Hardware classes: one table built per class, every further member joins with a few subnets."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ofa_edge.devices.backend import default_backend
from ofa_edge.devices.fleet import run_fleet
from ofa_edge.devices.sessions import open_session
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.lut.adapt import op_type
from ofa_edge.lut.classes import ClassBuilds, Membership, class_member_table, class_table, hardware_class
from ofa_edge.lut.store import table_file_name
from ofa_edge.lut.table import LatencyTable, SupernetRef
from ofa_edge.supernet.space import SearchSpace
from ofa_edge.supernet.spec import MBv3Spec
from ofa_edge.testing.sshd import SshDevice, sshd_unavailable

SPACE = SearchSpace(resolutions=(32,))
SUPERNET = SupernetRef("tiny-test", MBv3Spec(0.35, 10, SPACE))
CPU = default_backend("tflite")
FAST = {"passes": 1, "min_runs": 3, "min_seconds": 0.0, "batch_size": 16}


def test_a_class_is_what_sets_op_latencies_and_the_tables_conditions() -> None:
    pi = {
        "arch": "aarch64",
        "cpu_model": "Cortex-A72",
        "cores": 4,
        "board": "Raspberry Pi 4",
        "hostname": "a",
    }
    same = hardware_class({**pi, "hostname": "b", "memory_mb": 1}, "tflite", "2.3.0", "fp32", 4, CPU)
    assert hardware_class(pi, "tflite", "2.3.0", "fp32", 4, CPU) == same, "names and memory do not count"
    for other in (
        hardware_class({**pi, "cores": 2}, "tflite", "2.3.0", "fp32", 4, CPU),
        hardware_class(pi, "tflite", "2.4.0", "fp32", 4, CPU),
        hardware_class(pi, "tflite", "2.3.0", "int8", 4, CPU),
        hardware_class(pi, "tflite", "2.3.0", "fp32", 1, CPU),
        hardware_class({**pi, "power_mode": "15W"}, "tflite", "2.3.0", "fp32", 4, CPU),
    ):
        assert other != same


@contextlib.contextmanager
def two_boards() -> Iterator[list[DeviceSpec]]:
    """Two identical cgroup-limited boards (half a core each): real sshds on 127.0.0.8 and .9."""
    reason = sshd_unavailable()
    if reason:
        pytest.skip(reason)
    with SshDevice(host="127.0.0.8", cpu_quota=0.5) as a, SshDevice(host="127.0.0.9", cpu_quota=0.5) as b:
        yield [a.device_spec("board-a"), b.device_spec("board-b")]


def test_one_build_per_class_and_the_other_member_joins(tmp_path: Path) -> None:
    """Two boards of one class in one fleet run: one measures every op, the other waits for its
    table and joins it with 12 whole subnets; the joined table is the class table at the
    joiner's speed, and the search path then finds the built one (not the joined one) as the
    class table. Checks function, not speed (2 shared cores)."""
    classes = ClassBuilds()
    totals: dict[tuple[str, str], set[int]] = {}  # (device, "ops" | "subnets"): progress totals

    def counter(name: str, what: str) -> Callable[[int, int], None]:
        return lambda done, total: totals.setdefault((name, what), set()).add(total)

    def member(spec: DeviceSpec) -> Membership:
        with open_session(spec) as session:
            out = tmp_path / table_file_name(spec.name, "tiny-test", "fp32", 1)
            return class_member_table(
                session,
                SUPERNET,
                [32],
                out,
                precision="fp32",
                threads=1,
                classes=classes,
                join_samples=12,
                progress=counter(spec.name, "ops"),
                joining=counter(spec.name, "subnets"),
                **FAST,
            )

    with two_boards() as specs:
        results = run_fleet(specs, member)
    built = [r for r in results.values() if isinstance(r, Membership) and r.joined is None]
    joined = [r for r in results.values() if isinstance(r, Membership) and r.joined is not None]
    assert len(built) == len(joined) == 1, results
    (own,), (member_,) = built, joined
    assert member_.joined is not None and member_.joined.samples == 12 and member_.note is None
    joiner, builder = member_.table.device.name, own.table.device.name
    # The join times its 12 subnets in 3 interleaved rounds (adapt's default): 36 timings.
    assert totals.get((joiner, "subnets")) == {36} and (joiner, "ops") not in totals, totals
    assert (builder, "subnets") not in totals and totals[(builder, "ops")], totals
    assert member_.class_table == tmp_path / table_file_name(own.table.device.name, "tiny-test", "fp32", 1)
    adapted = member_.table.adapted
    assert adapted is not None and adapted.source_device == own.table.device.name
    assert set(adapted.type_scales.values()) == {adapted.scale}, "one class: one factor"
    for key, entry in member_.table.entries[32].items():
        assert entry.median_ms == pytest.approx(own.table.entries[32][key].median_ms * adapted.scale)
    cls = hardware_class(
        own.table.device.fingerprint,
        "onnxruntime",
        own.table.runtime.version,
        "fp32",
        1,
        default_backend("onnxruntime"),
    )
    assert class_table(cls, "tiny-test", [32], "board-c", folders=[tmp_path]) == member_.class_table
    assert class_table(cls, "tiny-test", [24], "board-c", folders=[tmp_path]) is None, "lacks r=24"


def test_a_member_the_class_table_does_not_predict_builds_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class table (found on the table search path) whose k7 blocks were made 20x slower
    cannot be rescaled to fit a board of the class: the board is told so and measures every op."""
    monkeypatch.setenv("OFA_EDGE_TABLES", str(tmp_path))
    path = {name: tmp_path / table_file_name(name, "tiny-test", "fp32", 1) for name in ("board-a", "board-b")}
    with two_boards() as (a, b):
        with open_session(a) as session:
            own = class_member_table(
                session, SUPERNET, [32], path["board-a"], precision="fp32", threads=1, **FAST
            )
        table = LatencyTable.load(path["board-a"])
        for key, entry in table.entries[32].items():
            if op_type(key).startswith("k7"):
                table.entries[32][key] = dataclasses.replace(entry, median_ms=entry.median_ms * 20)
        table.save(path["board-a"])
        with open_session(b) as session:
            member = class_member_table(
                session, SUPERNET, [32], path["board-b"], precision="fp32", threads=1, join_samples=12, **FAST
            )
    assert own.joined is None and member.joined is None and member.table.adapted is None
    assert member.note is not None and f"does not fit the class table {path['board-a'].name}" in member.note
    assert LatencyTable.load(path["board-b"]).adapted is None
