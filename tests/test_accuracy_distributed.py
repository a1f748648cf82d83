"""``accuracy build`` under torchrun (gloo, 2 processes): the ranks share the subnets, rank 0
writes the one table, and it equals the table one process measures, fresh or resumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ofa_edge.accuracy.table import build_accuracy_table, check_workers, read_table
from ofa_edge.data import ImageArray
from ofa_edge.distributed import Group
from ofa_edge.errors import ConfigError
from ofa_edge.supernet.ofa_mbv3 import OFAMobileNetV3
from ofa_edge.supernet.registry import get_supernet_info
from ofa_edge.testing.images import write_image_folder

OFA_EDGE = str(Path(sys.executable).with_name("ofa-edge"))
SUPERNET = "ofa-mbv3-cifar10"
IMAGES = ImageArray(np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.int64), ("a",))


def _build(
    data: Path, out: Path, samples: int, processes: int = 1, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``ofa-edge --json accuracy build`` on ``processes`` processes (torchrun's standalone
    rendezvous on loopback), one torch thread each; prints how long it took."""
    cmd = [OFA_EDGE, "--json", "accuracy", "build", "--supernet", SUPERNET, "--data", str(data),
           "--out", str(out), "--samples", str(samples), "--val-images", "16", "--host-threads", "1",
           *extra]  # fmt: skip
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "--no-python", *cmd]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)
    print(f"{samples} subnets on {processes} process(es): {time.perf_counter() - started:.1f} s")
    return res


def _result(res: subprocess.CompletedProcess[str]) -> dict:
    """The one result document on stdout (rank 0's; the other ranks print none)."""
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)  # fails on two documents


def _rows(path: Path) -> set[tuple[int, str, float]]:
    return {(r.index, json.dumps(r.arch.to_dict()), r.top1) for r in read_table(path).records}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 images: 16 held out (each subnet's top-1 in steps of 6.25 points), 144 to calibrate on."""
    return write_image_folder(tmp_path_factory.mktemp("acc-ddp") / "data", classes=2, per_class=80)


def test_two_processes_build_and_resume_the_table_one_process_builds(data: Path, tmp_path: Path) -> None:
    one = _result(_build(data, tmp_path / "one.jsonl", 6))
    assert one["subnets"] == 6 and one["processes"] == 1
    two = _result(_build(data, tmp_path / "two.jsonl", 6, 2))
    assert two["subnets"] == 6 and two["processes"] == 2
    ref = read_table(tmp_path / "one.jsonl")
    assert read_table(tmp_path / "two.jsonl").header == ref.header
    assert _rows(tmp_path / "two.jsonl") == _rows(tmp_path / "one.jsonl")
    assert [r.index for r in read_table(tmp_path / "two.jsonl").records] == list(range(6))  # round by round

    # Half measured by one process (what a build of 3 writes: the header and subnets 0-2, here
    # cut from the table of 6), finished by two: only the missing three are measured.
    first = "".join((tmp_path / "one.jsonl").read_text().splitlines(keepends=True)[:4])
    (tmp_path / "resumed.jsonl").write_text(first)
    _result(_build(data, tmp_path / "resumed.jsonl", 6, 2))
    text = (tmp_path / "resumed.jsonl").read_text()
    assert text.startswith(first)  # the first three records kept as written, none measured again
    assert [r.index for r in read_table(tmp_path / "resumed.jsonl").records] == list(range(6))
    assert read_table(tmp_path / "resumed.jsonl").header == ref.header
    assert _rows(tmp_path / "resumed.jsonl") == _rows(tmp_path / "one.jsonl")


class _OtherImagesOnRank1(Group):
    """Rank 0 of two, whose rank 1 loaded other validation images (another --data, say)."""

    def gather(self, obj: Any) -> list[Any]:
        return [obj, {**obj, "validation": {**obj["validation"], "sha256": "0" * 64}}]

    def broadcast(self, obj: Any) -> Any:
        return obj


@pytest.fixture(scope="module")
def net() -> OFAMobileNetV3:
    return get_supernet_info(SUPERNET).build().eval()


def test_workers_under_torchrun_are_refused(net: OFAMobileNetV3, tmp_path: Path) -> None:
    """A distributed build's ranks are its workers: a pool in each rank is refused up front,
    before any collective (the one-process group here has no peers to wait for)."""
    two = Group(rank=0, world_size=2)
    with pytest.raises(ConfigError, match=r"--workers 2 under torchrun \(2 processes\)"):
        build_accuracy_table(
            net, SUPERNET, tmp_path / "t.jsonl", 2, calib=IMAGES, val=IMAGES, workers=2, group=two
        )
    assert not (tmp_path / "t.jsonl").exists()
    check_workers(2, Group())  # one process: a local pool, as before
    check_workers(1, two)


def test_ranks_with_other_images_are_refused(net: OFAMobileNetV3, tmp_path: Path) -> None:
    """A rank that loaded other images would measure its subnets on them: refused, nothing written."""
    with pytest.raises(ConfigError, match="rank 1 loaded other validation than rank 0"):
        build_accuracy_table(
            net, SUPERNET, tmp_path / "t.jsonl", 2, calib=IMAGES, val=IMAGES, group=_OtherImagesOnRank1(0, 2)
        )
    assert not (tmp_path / "t.jsonl").exists()
