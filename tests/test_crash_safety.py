"""Crash safety with real kills: training and ``lut build`` SIGKILLed at random points and resumed,
an SSH device dropped in the middle of a batch, and two processes writing one file at once.

Kill points are random (the seed is in every failure message), so each run of the suite tries
other instants; every kill is a real SIGKILL of a real process, never a cooperative stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest
import torch

from ofa_edge.devices.agent import AgentSession
from ofa_edge.errors import AgentError, CheckpointError
from ofa_edge.lut.build import build_table
from ofa_edge.lut.keys import enumerate_ops
from ofa_edge.lut.micro import export_micro_models
from ofa_edge.lut.table import LatencyTable
from ofa_edge.supernet.registry import get_supernet_info
from ofa_edge.supernet.space import SearchSpace
from ofa_edge.supernet.spec import MBv3Spec
from ofa_edge.testing.sshd import SshDevice
from ofa_edge.training.progressive import Trainer
from tests.test_lut_build import FAST, SUPERNET
from tests.test_training import CONFIG, _toy_data

ROOT = Path(__file__).resolve().parents[1]
SEED = random.randrange(1 << 30)  # new kill points on every run; printed when a test fails


@pytest.fixture
def rng() -> random.Random:
    return random.Random(SEED)


def _env() -> dict[str, str]:
    """The test's environment (its own cache) for child processes, one torch thread each, with
    this checkout's code first."""
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": path}


def _python(code: str, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """Run ``code`` in a fresh interpreter in the repository (so ``tests`` imports)."""
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=_env(), text=True, **popen)


def _wait_for_line(proc: subprocess.Popen[str], wanted: str) -> list[str]:
    """Lines the child printed up to ``wanted`` (which it prints when the interesting part starts)."""
    assert proc.stdout is not None
    lines = []
    while (line := proc.stdout.readline()) and line.strip() != wanted:
        lines.append(line)
    assert line, f"the child exited before {wanted!r}: {''.join(lines)}"
    return lines


def _temps(folder: Path) -> set[str]:
    """The temp files in ``folder`` (``atomic_path`` names them ``NAME.<random>.tmp[SUFFIX]``)."""
    return {p.name for p in folder.glob("*.tmp*")} if folder.is_dir() else set()


@pytest.fixture
def reaper(tmp_path: Path) -> Iterator[None]:
    """After the test, SIGKILL what a killed parent left running here (agents whose command line
    names this test's folder): only processes this test started."""
    yield
    mine = str(tmp_path).encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):  # gone meanwhile
            if mine in Path(f"/proc/{pid}/cmdline").read_bytes() and int(pid) != os.getpid():
                os.kill(int(pid), signal.SIGKILL)


# --- training ----------------------------------------------------------------------------------

TRAIN = """
import os, signal, sys
from pathlib import Path
from tests.test_training import CONFIG, _toy_data
from ofa_edge.training.progressive import Trainer
left = [int(sys.argv[2])]

def kill_at_nth_step(event, args):
    # SIGKILL this process right before its nth rename, link or removal of a checkpoint file
    if event in ("os.rename", "os.link", "os.remove") and Path(args[0]).name.startswith("checkpoint"):
        left[0] -= 1
        if left[0] == 0:
            os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(kill_at_nth_step)
trainer = Trainer(CONFIG, _toy_data(192), Path(sys.argv[1]), checkpoint_minutes=0)
print("started", flush=True)
trainer.run()
print("finished", flush=True)
"""

#: How a training child is killed: the test SIGKILLs it (a function of the child), or the child
#: SIGKILLs itself right before its nth file step on a checkpoint (an int; 0: never).
Kill = Callable[[subprocess.Popen[str]], None] | int


def _train(run_dir: Path, kill: Kill = 0) -> tuple[int, str]:
    """Train in a child process (a checkpoint after every step), killed as ``kill`` says; returns
    its exit code and output."""
    nth = kill if isinstance(kill, int) else 0
    proc = _python(TRAIN, str(run_dir), str(nth), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    before = _wait_for_line(proc, "started")
    if not isinstance(kill, int):
        kill(proc)
    out, _ = proc.communicate()
    return proc.returncode, "".join(before) + out


def _after(seconds: float) -> Kill:
    def kill(proc: subprocess.Popen[str]) -> None:
        time.sleep(seconds)
        proc.send_signal(signal.SIGKILL)

    return kill


def _inside_save(run_dir: Path, nth: int) -> Kill:
    """SIGKILL as soon as the ``nth`` new temp file of a save appears (the save is under way)."""

    def kill(proc: subprocess.Popen[str]) -> None:
        seen = _temps(run_dir)
        new: set[str] = set()
        while proc.poll() is None and len(new) < nth:
            new |= _temps(run_dir) - seen
            time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)

    return kill


def _comparable(path: Path) -> dict[str, Any]:
    """A checkpoint without its clock readings (wall and CPU seconds differ between runs)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    drop = lambda d: {k: v for k, v in d.items() if not k.endswith("_seconds")}  # noqa: E731
    state = drop(ckpt["state"])
    state["log"] = [drop(e) for e in state["log"]]
    return {**ckpt, "state": state}


def _same(a: Any, b: Any) -> bool:
    """Bit-identical nested checkpoints: tensors equal exactly, everything else ==."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_training_killed_at_random_points_resumes_bit_identical(tmp_path: Path, rng: random.Random) -> None:
    started = time.monotonic()
    code, out = _train(tmp_path / "straight")
    assert code == 0 and "finished" in out, out
    seconds = time.monotonic() - started  # the whole run, as an upper bound for random delays
    run = tmp_path / "killed"
    ckpt = run / "checkpoint.pt"
    # A save takes 3-4 file steps: the nth step of a run falls in its first few saves, anywhere.
    kills: list[Kill] = [rng.randint(1, 12), _inside_save(run, rng.randint(1, 2)), rng.randint(1, 12)]
    kills += [_after(rng.uniform(0, seconds / 2)), rng.randint(1, 12)]
    progress, in_save = (0, 0, 0), 0
    for kill in kills:
        temps = _temps(run)
        code, out = _train(run, kill)
        assert "resuming from" not in out, f"seed {SEED}: checkpoint.pt was not loadable: {out}"
        if code == 0:
            break  # the run finished before this kill
        assert code == -signal.SIGKILL, f"seed {SEED}: {out}"
        in_save += bool(_temps(run) - temps)  # a save's temp file left behind: killed mid-save
        if progress != (0, 0, 0) or ckpt.exists() or ckpt.with_suffix(".pt.prev").exists():
            # once a checkpoint was written: always there, whole, never behind
            assert ckpt.exists(), f"seed {SEED}: the kill left no {ckpt.name}"
            state = _comparable(ckpt)["state"]
            assert (state["phase"], state["epoch"], state["step"]) >= progress, f"seed {SEED}: went back"
            progress = (state["phase"], state["epoch"], state["step"])
    assert in_save >= 1, f"seed {SEED}: no kill landed inside a save"
    code, out = _train(run)
    assert code == 0 and "finished" in out and "resuming from" not in out, f"seed {SEED}: {out}"
    assert _same(_comparable(run / "checkpoint.pt"), _comparable(tmp_path / "straight" / "checkpoint.pt")), (
        f"seed {SEED}: the resumed run differs from the uninterrupted one"
    )


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Train in-process on one torch thread (two are many times slower on a busy 2-core host)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_unreadable_checkpoint_resumes_from_prev_and_says_so(tmp_path: Path, one_thread: None) -> None:
    data = _toy_data(192)
    Trainer(CONFIG, data, tmp_path, log=lambda _: None).run(stop_after_seconds=0)
    Trainer(CONFIG, data, tmp_path, log=lambda _: None).run(stop_after_seconds=0)  # .prev: after step 1
    good = _comparable(tmp_path / "checkpoint.pt.prev")
    (tmp_path / "checkpoint.pt").write_bytes(b"torn")
    said: list[str] = []
    trainer = Trainer(CONFIG, data, tmp_path, log=said.append)
    assert trainer.state.step == good["state"]["step"] == 1
    assert len(said) == 1 and "checkpoint.pt is unreadable" in said[0] and "checkpoint.pt.prev" in said[0]
    assert (tmp_path / "checkpoint.pt.unreadable").read_bytes() == b"torn"  # kept, out of the way
    trainer.run(stop_after_seconds=0)  # the next save keeps the good .prev
    assert _same(_comparable(tmp_path / "checkpoint.pt.prev"), good)
    (tmp_path / "checkpoint.pt").unlink()  # as an old version's kill between its two renames left it
    said.clear()
    assert Trainer(CONFIG, data, tmp_path, log=said.append).state.step == 1
    assert "checkpoint.pt is missing" in said[0]
    (tmp_path / "checkpoint.pt.prev").write_bytes(b"torn too")
    with pytest.raises(
        CheckpointError, match=r"cannot resume from .*checkpoint.pt \(checkpoint.pt.prev: "
    ) as info:
        Trainer(CONFIG, data, tmp_path)
    assert "\n" not in str(info.value)


# --- lut build --------------------------------------------------------------------------------


def _lut_build(tmp_path: Path, out: Path) -> subprocess.Popen[str]:
    """``ofa-edge lut build`` on the local device, the smallest build the command allows."""
    inventory = tmp_path / "devices.toml"
    inventory.write_text(f'[devices.local]\ntransport = "local"\nworkdir = "{tmp_path / "agent"}"\n')
    args = ["--json", "lut", "build", "local", "--inventory", str(inventory), "--out", str(out)]
    args += ["--supernet", "ofa-mbv3-cifar10", "--resolutions", "24", "--passes", "1"]
    return subprocess.Popen(
        [sys.executable, "-m", "ofa_edge.cli.main", *args],
        cwd=tmp_path,
        env=_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _read_table(path: Path) -> dict[str, Any]:
    """The table file as it stands: it must always be whole JSON, without repeated keys."""

    def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"repeated keys in {path}"
        return dict(pairs)

    return json.loads(path.read_text(), object_pairs_hook=no_repeats)


def _kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    """SIGKILL ``proc`` as soon as ``ready()``; it must not have ended before."""
    while proc.poll() is None and not ready():
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"seed {SEED}: the build ended before the kill: {err}"


def _entries(table: dict[str, Any]) -> dict[str, Any]:
    return table["entries"].get("24", {})


def test_lut_build_killed_then_resumed_loses_and_repeats_nothing(
    tmp_path: Path, rng: random.Random, reaper: None
) -> None:
    out = tmp_path / "lut.json"
    micro = Path(os.environ["OFA_EDGE_CACHE"]) / "micro"

    def exported() -> list[Path]:
        return [p for p in micro.glob("*.onnx") if ".tmp" not in p.name] if micro.is_dir() else []

    # 1. Killed while exporting its micro-models into the cache: every file there is whole.
    n_exported = rng.randint(5, 60)
    _kill_when(_lut_build(tmp_path, out), lambda: len(exported()) >= n_exported)
    for path in exported():
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # a torn file fails here
    # 2. Resumed, killed while measuring: the table on disk is whole whenever it is read.
    n_measured = rng.randint(3, 80)
    proc = _lut_build(tmp_path, out)
    _kill_when(proc, lambda: out.exists() and len(_entries(_read_table(out))) >= n_measured)
    before = _entries(_read_table(out))
    # 3. Resumed to the end.
    proc = _lut_build(tmp_path, out)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, f"seed {SEED}: {stderr}"
    LatencyTable.load(out)  # a complete, valid table
    final = _entries(_read_table(out))
    expected = {op.key for op in enumerate_ops(get_supernet_info("ofa-mbv3-cifar10").spec, [24])}
    assert set(final) == expected and json.loads(stdout)["ops"] == len(expected)
    assert len(before) >= n_measured
    _kept_once(before, final)


def _kept_once(before: dict[str, Any], final: dict[str, Any]) -> None:
    """Every entry of ``before`` is in ``final`` as it was (same measurement time and raw value:
    not measured again), and every entry of ``final`` holds one pass."""
    assert {k: (e["measured"], e["raw_median_ms"]) for k, e in before.items()} == {
        k: (final[k]["measured"], final[k]["raw_median_ms"]) for k in before if k in final
    }, f"seed {SEED}: entries were lost or measured again"
    assert all(len(e.get("passes_ms") or [e["median_ms"]]) == 1 for e in final.values()), (
        "an op measured twice"
    )


def test_ssh_device_dropped_mid_batch_then_resumed(fresh_ssh_device: SshDevice, tmp_path: Path) -> None:
    spec = fresh_ssh_device.device_spec("pi")
    out = tmp_path / "lut.json"
    killed: list[int] = []

    def drop_at_five(done: int, total: int) -> None:
        if done == 5:  # the agent is measuring the rest of the 16-op batch right now
            killed.append(fresh_ssh_device.kill_sessions())

    with AgentSession(spec) as session, pytest.raises(AgentError) as info:
        build_table(session, SUPERNET, [32], out, progress=drop_at_five, **FAST)
    assert killed and killed[0] > 0
    message = str(info.value)
    assert "\n" not in message and message.startswith("pi: the agent stopped while measuring ")
    before = _read_table(out)["entries"]["32"]
    assert len(before) >= 5
    calls: list[tuple[int, int]] = []
    with AgentSession(spec) as session:
        build_table(
            session, SUPERNET, [32], out, progress=lambda done, total: calls.append((done, total)), **FAST
        )
    final = _read_table(out)["entries"]["32"]
    assert calls[0][0] == len(before) and calls[-1] == (len(final), len(final)), "ops missing"
    assert len(calls) == 1 + len(final) - len(before), "ops measured twice"
    _kept_once(before, final)


# --- two writers of one file ---------------------------------------------------------------------

EXPORT = """
import sys, time
from pathlib import Path
from ofa_edge.lut.keys import enumerate_ops
from ofa_edge.lut.micro import export_micro_models
from ofa_edge.supernet.space import SearchSpace
from ofa_edge.supernet.registry import get_supernet_info
from ofa_edge.supernet.spec import MBv3Spec
spec = MBv3Spec(0.35, 10, SearchSpace(resolutions=(32,)))
ops = enumerate_ops(spec, [32])[: int(sys.argv[2])]
print("ready", flush=True)
while not Path(sys.argv[1]).exists():
    time.sleep(0.001)
export_micro_models(spec, ops)
"""

SAVE = """
import sys, time
from pathlib import Path
from ofa_edge.lut.table import LatencyTable
table = LatencyTable.load(sys.argv[2])
print("ready", flush=True)
while not Path(sys.argv[1]).exists():
    time.sleep(0.001)
for _ in range(int(sys.argv[4])):
    table.save(sys.argv[3])
"""


def _together(code: str, args: list[list[str]], go: Path, while_running: Callable[[], None]) -> None:
    """Start one child per argument list, release them at once (``go`` appears), call
    ``while_running`` until all have exited; each must exit cleanly."""
    procs = [_python(code, str(go), *a, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for a in args]
    for proc in procs:
        _wait_for_line(proc, "ready")
    go.touch()
    while any(p.poll() is None for p in procs):
        while_running()
    for proc in procs:
        out, _ = proc.communicate()
        assert proc.returncode == 0, out


def test_two_processes_exporting_one_micro_model_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 12  # the same ops, in the same order, by two processes released at once
    _together(EXPORT, [[str(n)], [str(n)]], tmp_path / "go", lambda: time.sleep(0.01))
    together = {p.name: p.read_bytes() for p in (Path(os.environ["OFA_EDGE_CACHE"]) / "micro").iterdir()}
    monkeypatch.setenv("OFA_EDGE_CACHE", str(tmp_path / "alone"))  # the same files by one writer
    spec = MBv3Spec(0.35, 10, SearchSpace(resolutions=(32,)))
    alone = {
        p.name: p.read_bytes() for p in export_micro_models(spec, enumerate_ops(spec, [32])[:n]).values()
    }
    assert len(alone) == n and together == alone, "the cache holds torn, mixed or stray files"


def test_two_processes_saving_one_table(tmp_path: Path) -> None:
    space = SearchSpace(resolutions=(32, 40))
    docs = []
    for name, value in (("a", 1.0), ("b", 2.0)):  # two tables of ~50 kB, in the file format
        doc = {
            "schema_version": 6,
            "kind": "ofa-edge/latency-table",
            "supernet": {"id": "tiny", "width_mult": 0.35, "n_classes": 10, "space": space.to_dict()},
            "device": {"name": name, "fingerprint": {}},
            "runtime": {"name": "onnxruntime", "version": None},
            "precision": "fp32",
            "threads": 1,
            "delegate": "cpu",
            "created": "2026-01-01T00:00:00+00:00",
            "calibration": None,
            "reference": None,
            "entries": {
                str(r): {
                    op.key: {"median_ms": value, "samples": 3}
                    for op in enumerate_ops(MBv3Spec(0.35, 10, space), [r])
                }
                for r in (32, 40)
            },
        }
        (tmp_path / name).write_text(json.dumps(doc))
        LatencyTable.load(tmp_path / name).save(tmp_path / name)
        docs.append(_read_table(tmp_path / name))  # as LatencyTable.save writes it
    target = tmp_path / "table.json"
    reads: list[str] = []

    def read() -> None:
        if target.exists():
            doc = _read_table(target)  # whole JSON every time
            assert doc in docs, "a save mixed the two writers' tables"
            reads.append(doc["device"]["name"])

    _together(SAVE, [[str(tmp_path / name), str(target), "300"] for name in "ab"], tmp_path / "go", read)
    read()
    assert reads and not _temps(tmp_path), "a temp file was left behind"
