"""Accuracy tables: the measured top-1 of many random subnets, the accuracy predictor's data.

A table is a JSON-lines file. Line 1 is the header::

    {"schema": "ofa-edge/accuracy-table", "schema_version": 1, "supernet": ID,
     "weights_sha256": ..., "seed": 0, "calib_count": 1000,
     "calibration": {"source": ..., "images": 1000, "sha256": ...},
     "validation": {"source": ..., "images": 5000, "sha256": ...}}

and every later line one measured subnet, written (and flushed) as soon as it is measured::

    {"index": 7, "arch": {"ks": [...], "e": [...], "d": [...], "r": 36}, "top1": 71.3, "seconds": 9.8}

Subnet ``index`` is drawn from ``(seed, index)`` alone, uniformly over the space, and its
resolution is ``resolutions[index % len(resolutions)]``, so every resolution is measured equally
often. Re-running the same build resumes: indices already in the file are skipped, a line cut
short by a kill is dropped. A file measured with other weights, data or settings is refused.
Under ``torchrun`` the ranks share the subnets and rank 0 alone reads and writes the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ofa_edge.accuracy.measure import CALIB_IMAGES, subnet_top1
from ofa_edge.data import ImageArray
from ofa_edge.distributed import Group
from ofa_edge.errors import ConfigError
from ofa_edge.supernet.elastic import ElasticSupernet
from ofa_edge.supernet.preprocessing import Preprocessing
from ofa_edge.supernet.registry import get_supernet_info
from ofa_edge.supernet.space import ArchConfig, SearchSpace

SCHEMA = "ofa-edge/accuracy-table"
SCHEMA_VERSION = 1
#: Header fields that must match for a build to resume into an existing file.
_IDENTITY = ("schema_version", "supernet", "weights_sha256", "seed", "calib_count")


@dataclass(frozen=True)
class AccuracyRecord:
    """One measured subnet of a table."""

    index: int
    arch: ArchConfig
    top1: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "arch": self.arch.to_dict(), "top1": self.top1, "seconds": self.seconds}


@dataclass
class AccuracyTable:
    """A table file read back: its header and its records in file order."""

    header: dict[str, Any]
    records: list[AccuracyRecord]


def weights_sha256(net: torch.nn.Module) -> str:
    """A digest of a network's weights as loaded (names, dtypes, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def describe_images(data: ImageArray, source: str) -> dict[str, Any]:
    """A header entry for an image set: where it came from, how many, and a digest of its content."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(data.images).tobytes())
    digest.update(np.ascontiguousarray(data.labels, dtype=np.int64).tobytes())
    return {"source": source, "images": len(data), "sha256": digest.hexdigest()}


def sample_arch(space: SearchSpace, seed: int, index: int) -> ArchConfig:
    """Subnet ``index`` of a table: uniform choices from ``(seed, index)``, resolution by rotation."""
    arch = space.sample(random.Random(f"ofa-edge-accuracy-table:{seed}:{index}"))
    return dataclasses.replace(arch, r=space.resolutions[index % len(space.resolutions)])


def read_table(path: str | Path) -> AccuracyTable:
    """Read a table file; a last line cut short by an interrupted write is ignored."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read accuracy table {path}: {err.strerror}") from None
    lines = text.split("\n")[:-1]  # what follows the last newline is an unfinished write
    try:
        header = json.loads(lines[0]) if lines else None
        if not isinstance(header, dict) or header.get("schema") != SCHEMA:
            raise ValueError("no accuracy-table header")
        if header.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"schema_version {header.get('schema_version')}, expected {SCHEMA_VERSION}")
        records = []
        for line in lines[1:]:
            row = json.loads(line)
            records.append(
                AccuracyRecord(row["index"], ArchConfig.from_dict(row["arch"]), row["top1"], row["seconds"])
            )
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            f"{path} is not an ofa-edge accuracy table: {err}",
            hint="pass another --out, or move the file away",
        ) from None
    return AccuracyTable(header, records)


def _check_same_settings(path: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    for key in _IDENTITY:
        if old.get(key) != new[key]:
            raise ConfigError(
                f"{path} was measured with another {key} ({old.get(key)!r}, now {new[key]!r})",
                hint="resume with the same weights, data and --seed, or write a new --out file",
            )
    for key in ("calibration", "validation"):
        if (old.get(key) or {}).get("sha256") != new[key]["sha256"]:
            raise ConfigError(
                f"{path} was measured on other {key} images ({(old.get(key) or {}).get('source')!r}, "
                f"now {new[key]['source']!r})",
                hint="resume with the same --data, or write a new --out file",
            )


def _check_ranks_agree(headers: list[dict[str, Any]]) -> None:
    """Refuse a distributed build whose ranks loaded other weights or images than rank 0: their
    subnets would be measured on another network or data than the header says."""

    def identity(header: dict[str, Any]) -> dict[str, Any]:  # what, not where from (paths differ)
        images = {
            key: (header[key]["images"], header[key]["sha256"]) for key in ("calibration", "validation")
        }
        return {"weights": header["weights_sha256"], "calib_count": header["calib_count"], **images}

    ours = identity(headers[0])
    for rank, header in enumerate(headers[1:], 1):
        theirs = identity(header)
        for key in ours:
            if theirs[key] != ours[key]:
                raise ConfigError(
                    f"rank {rank} loaded other {key} than rank 0",
                    hint="give every machine the same --checkpoint and --data",
                )


def _open_table(path: Path, header: dict[str, Any]) -> AccuracyTable:
    """The table at ``path`` ready to append to (checked against ``header``, an unfinished last
    line dropped), or a new file holding only ``header``."""
    if path.is_file() and path.stat().st_size > 0:
        table = read_table(path)
        _check_same_settings(path, table.header, header)
        with path.open("r+b") as f:  # drop an unfinished last line before appending
            f.truncate(f.read().rfind(b"\n") + 1)
        return table
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(header) + "\n")
    return AccuracyTable(header, [])


def check_workers(workers: int, group: Group) -> None:
    """Refuse ``workers`` > 1 under ``torchrun``: a distributed build already measures one subnet
    per process, so more processes come from ``--nproc-per-node``, not from pools inside ranks."""
    if workers > 1 and group.world_size > 1:
        raise ConfigError(
            f"--workers {workers} under torchrun ({group.world_size} processes): "
            "a distributed build's processes are its workers",
            hint="drop --workers and start more processes (torchrun --nproc-per-node N)",
        )


@dataclass
class _Measurer:
    """Measures subnet ``index`` of a table: what each worker process of a parallel build holds."""

    net: ElasticSupernet
    seed: int
    calib: ImageArray
    val: ImageArray
    preprocessing: Preprocessing
    calib_count: int

    def __call__(self, index: int) -> AccuracyRecord:
        arch = sample_arch(self.net.space, self.seed, index)
        started = time.perf_counter()
        top1 = subnet_top1(
            self.net, arch, self.calib, self.val, self.preprocessing, calib_count=self.calib_count
        )
        return AccuracyRecord(index, arch, top1, round(time.perf_counter() - started, 3))


_worker_measurer: _Measurer | None = None


def exit_with_parent(poll_seconds: float = 1.0) -> None:
    """End this process soon after its parent dies, which a pool worker otherwise outlives
    (a SIGTERM or SIGKILL to the build leaves its workers waiting on a queue nobody feeds).
    The parent is the one that started this process, so a parent gone before this call counts."""
    started_by = multiprocessing.parent_process()
    parent = started_by.pid if started_by is not None else os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _start_worker(measurer: _Measurer) -> None:
    """Pool initializer: one torch thread per worker, since the workers already fill the cores."""
    global _worker_measurer
    torch.set_num_threads(1)
    exit_with_parent()
    _worker_measurer = measurer


def _worker_measure(index: int) -> AccuracyRecord:
    assert _worker_measurer is not None, "worker started without _start_worker"
    return _worker_measurer(index)


def _measured(measurer: _Measurer, todo: list[int], workers: int) -> Generator[AccuracyRecord, None, None]:
    """Records of ``todo`` as they finish: in this process, or spread over ``workers`` processes."""
    if workers <= 1:
        yield from map(measurer, todo)
        return
    context = multiprocessing.get_context("spawn")  # fork is unsafe once torch has run threads
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(measurer,))
    try:
        futures = [pool.submit(_worker_measure, index) for index in todo]
        for future in as_completed(futures):
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def build_accuracy_table(
    net: ElasticSupernet,
    supernet_id: str,
    out_path: str | Path,
    n: int = 1000,
    seed: int = 0,
    *,
    calib: ImageArray,
    val: ImageArray,
    calib_source: str = "calibration set",
    val_source: str = "validation set",
    calib_count: int = CALIB_IMAGES,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    group: Group | None = None,
) -> AccuracyTable:
    """Measure subnets ``0..n-1`` into ``out_path``, resuming what an earlier build left.

    Each subnet is BN-recalibrated on ``calib`` and evaluated on ``val``, images normalized as
    the registry says supernet ``supernet_id``'s are
    (:func:`~ofa_edge.accuracy.measure.subnet_top1`); ``progress(done, n)`` follows every one.
    With ``workers`` > 1 the subnets are measured in that many processes (one thread each) and
    written in the order they finish; a subnet's result does not depend on where it ran.

    With a ``group`` of several ranks (``torchrun``; default: a group of one, this process) rank
    0 alone reads, checks and writes the file: it hands the subnets still to measure to all
    ranks, rank ``k`` measures every ``world_size``-th of them from the ``k``-th, and after each
    round (one subnet per rank) rank 0 appends the round's records, so a killed build loses at
    most the round under way. Every rank must load the same weights and images (checked), and
    every rank returns the same table; only rank 0 calls ``progress``. ``workers`` > 1 is
    refused there (:func:`check_workers`): the ranks are the workers.
    """
    group = group or Group()
    check_workers(workers, group)
    path = Path(out_path)
    header = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "supernet": supernet_id,
        "weights_sha256": weights_sha256(net),
        "seed": seed,
        "calib_count": min(calib_count, len(calib)),
        "calibration": describe_images(calib, calib_source),
        "validation": describe_images(val, val_source),
    }
    headers = group.gather(header)
    found: tuple[AccuracyTable | None, ConfigError | None] = (None, None)
    if group.is_main:
        try:
            _check_ranks_agree(headers)
            found = (_open_table(path, header), None)
        except ConfigError as err:
            found = (None, err)
    table, error = group.broadcast(found)
    if error is not None:
        raise error
    assert table is not None
    done = {r.index for r in table.records}
    todo = [i for i in range(n) if i not in done]
    finished = n - len(todo)
    progress = progress if group.is_main else None
    if progress:
        progress(finished, n)
    preprocessing = get_supernet_info(supernet_id).preprocessing
    measurer = _Measurer(net, seed, calib, val, preprocessing, calib_count)
    mine = _measured(measurer, todo[group.rank :: group.world_size], workers)
    rounds = -(-len(todo) // group.world_size)  # the most subnets any rank measures
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(path.open("a")) if group.is_main else None
        stack.enter_context(contextlib.closing(mine))  # closing stops the workers at once
        for _ in range(rounds):
            for record in group.gather(next(mine, None)):  # None: that rank has measured its share
                if record is None:
                    continue
                if f is not None:
                    f.write(json.dumps(record.to_dict()) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                table.records.append(record)
                finished += 1
                if progress:
                    progress(finished, n)
    return table
