"""Device locks (``ofa_edge.devices.lock``) on real test-bed devices: two ``bench`` commands
racing on one sshd device (one waits, says who holds it, both results valid), stale locks taken
over, live ones waited for or removed by ``devices unlock``, ``devices check`` showing a held
lock, a lock released after errors, a bounded wait on ``local``, the refresh keeping a hold
longer than the lock's life (and saying when the lock is lost) and the lock through the ADB
double. The machine has 2 cores: these check function, not speed."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ofa_edge.devices import lock as lock_module
from ofa_edge.devices.lock import DeviceLock
from ofa_edge.devices.sessions import open_session
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.devices.transports import open_transport
from ofa_edge.errors import DeviceBusy, DeviceError
from ofa_edge.testing.fake_adbd import FakeAdbd
from ofa_edge.testing.sshd import SshDevice
from tests.models import conv_model
from tests.test_fleet import _ssh_table

pytestmark = pytest.mark.timeout(180)
WORKDIR = "~/agent-locks"


def cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ofa_edge.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=150)
    return proc.returncode, out, err


def plant(spec: DeviceSpec, holder: dict[str, object], expires_in: int) -> None:
    """Leave a lock on the device as another command would have (written through the device)."""
    with open_transport(spec) as transport:
        workdir = transport.run(
            ["sh", "-c", 'w=$1; mkdir -p "$HOME/${w#"~/"}"; echo "$HOME/${w#"~/"}"', "sh", spec.workdir]
        ).stdout.strip()
        record = json.dumps({**holder, "token": "theirs"})
        transport.run(
            [
                "sh",
                "-c",
                'printf "%s\\n" "$1" > "$3/lock.json"; echo "$2 theirs" > "$3/lock.expires"',
                "sh",
                record,
                str(int(time.time()) + expires_in),
                workdir,
            ]
        )


def gone_pid() -> int:
    """The pid of a process of this host that has ended."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def pi(ssh_device: SshDevice, tmp_path: Path) -> tuple[DeviceSpec, Path]:
    """The sshd device as the inventory names it ("pi"), and that inventory's file."""
    inventory = tmp_path / "devices.toml"
    inventory.write_text(_ssh_table("pi", ssh_device, ssh_device.known_hosts, WORKDIR))
    return ssh_device.device_spec("pi", workdir=WORKDIR), inventory


def test_two_benches_race_one_waits_both_valid(
    pi: tuple[DeviceSpec, Path], ssh_device: SshDevice, tmp_path: Path
) -> None:
    spec, inventory = pi
    model = conv_model(tmp_path / "m.onnx")
    lock_file = Path(ssh_device.home) / "agent-locks" / "lock.json"
    bench = ("--json", "bench", "pi", str(model), "--inventory", str(inventory), "--runs")
    first = cli(*bench, "3000")
    deadline = time.monotonic() + 60
    while not (lock_file.is_file() and json.loads(lock_file.read_text() or "{}").get("pid") == first.pid):
        assert first.poll() is None and time.monotonic() < deadline, "the first bench never took the lock"
        time.sleep(0.05)
    second = cli(*bench, "20")
    (code1, out1, err1), (code2, out2, err2) = finished(first), finished(second)
    assert code1 == 0 and code2 == 0, err1 + err2
    waited = [line for line in err2.splitlines() if "busy" in line]
    assert len(waited) == 1, err2  # said once, not at every try
    assert f"pid {first.pid}" in waited[0] and "bench pi" in waited[0] and "expires" in waited[0]
    assert "busy" not in err1
    for out, runs in ((out1, 3000), (out2, 20)):
        doc = json.loads(out)
        assert doc["device"] == "pi" and doc["runs"] >= runs and doc["median_ms"] > 0
    assert not lock_file.exists(), "released at the end"
    assert DeviceLock(spec).holder() is None


def test_stale_locks_are_taken_over_and_live_ones_waited_for(pi: tuple[DeviceSpec, Path]) -> None:
    spec, _ = pi
    said: list[str] = []
    elsewhere = {
        "owner": "ghost@elsewhere",
        "host": "elsewhere",
        "pid": 4242,
        "command": "ofa-edge lut build pi",
        "acquired": "2026-01-01T00:00:00+00:00",
    }
    plant(spec, elsewhere, expires_in=-5)
    with DeviceLock(spec, say=said.append, command="test") as lock:
        assert lock.holder() is None, "ours now: holder() shows only another's lock"
    assert len(said) == 1 and said[0].startswith("pi: took over the lock of ghost@elsewhere (pid 4242)")
    assert "`ofa-edge lut build pi`" in said[0] and said[0].endswith("(it expired)")

    # A holder of this host whose process is gone: taken at once, long before its expiry.
    said.clear()
    plant(spec, {**elsewhere, "host": DeviceLock(spec).hostname, "pid": gone_pid()}, expires_in=600)
    started = time.monotonic()
    with DeviceLock(spec, say=said.append):
        pass
    assert time.monotonic() - started < 60 and said[-1].endswith("(its process is gone)"), said

    # A live holder elsewhere, not expired: waited for, then DeviceBusy naming it.
    plant(spec, elsewhere, expires_in=600)
    said.clear()
    with pytest.raises(
        DeviceBusy, match=r"pi is busy: ghost@elsewhere \(pid 4242\) running `ofa-edge lut build pi`"
    ) as info:
        DeviceLock(dataclasses.replace(spec, lock_timeout=1.5), say=said.append).acquire()
    assert "--lock-timeout" in (info.value.hint or "") and len(said) == 1 and "waiting up to 1.5 s" in said[0]
    assert DeviceLock(spec).holder() is not None, "a lock that is not ours is never removed"

    # ... unless the user says its holder is gone (`devices unlock`): removed, and named.
    removed = DeviceLock(spec).break_lock()
    assert removed is not None and removed.owner == "ghost@elsewhere" and removed.pid == 4242
    assert DeviceLock(spec).holder() is None and DeviceLock(spec).break_lock() is None
    plant(spec, elsewhere, expires_in=-1)  # leave it stale for the next test


def test_check_shows_a_held_lock(pi: tuple[DeviceSpec, Path]) -> None:
    spec, inventory = pi
    with DeviceLock(spec, command="ofa-edge lut build pi --passes 3"):
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "ofa_edge.cli.main",
                "--json",
                "devices",
                "check",
                "pi",
                "--inventory",
                str(inventory),
            ],
            capture_output=True,
            text=True,
            timeout=150,
        )
        assert res.returncode == 0, res.stderr
        lock = json.loads(res.stdout)["devices"]["pi"]["fingerprint"]["lock"]
        assert lock["pid"] == os.getpid() and lock["command"] == "ofa-edge lut build pi --passes 3"
        assert lock["stale"] is False and lock["owner"].endswith("@" + DeviceLock(spec).hostname)
        assert "token" not in lock
    res = subprocess.run(
        [sys.executable, "-m", "ofa_edge.cli.main", "devices", "check", "pi", "--inventory", str(inventory)],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert res.returncode == 0 and res.stdout.strip() == "pi: ok", res.stdout + res.stderr


def test_lock_released_after_errors(pi: tuple[DeviceSpec, Path]) -> None:
    spec, _ = pi
    with pytest.raises(RuntimeError, match="boom"), open_session(spec) as session:
        assert DeviceLock(spec).holder() is not None
        session.fingerprint()
        raise RuntimeError("boom")
    assert DeviceLock(spec).holder() is None
    broken = dataclasses.replace(spec, python="/no/such/python3")
    with pytest.raises(DeviceError), open_session(broken):
        pass  # the agent cannot start: the session's start fails after taking the lock
    assert DeviceLock(spec).holder() is None


def test_local_bench_waits_bounded_then_device_busy(tmp_path: Path) -> None:
    inventory = tmp_path / "devices.toml"
    inventory.write_text(f'[devices.local]\ntransport = "local"\nworkdir = "{tmp_path / "agent"}"\n')
    spec = DeviceSpec(name="local", workdir=str(tmp_path / "agent"))
    model = conv_model(tmp_path / "m.onnx")
    with DeviceLock(spec, command="someone else's build"):
        code, _, err = finished(
            cli("bench", "local", str(model), "--lock-timeout", "1", "--inventory", str(inventory))
        )
    assert code == 5, err
    assert "local is busy: " in err and f"(pid {os.getpid()}) running `someone else's build`" in err
    assert "waited 1 s" in err and "--lock-timeout" in err and "Traceback" not in err
    code, out, err = finished(cli("bench", "local", str(model), "--runs", "5", "--inventory", str(inventory)))
    assert code == 0 and "median" in out, err


def test_lock_through_adb(adb_spec: DeviceSpec, phone: FakeAdbd) -> None:
    spec = dataclasses.replace(adb_spec, workdir=str(phone.sandbox / "agent dir"), lock_timeout=1)
    with DeviceLock(spec, command="phone build"):
        holder = DeviceLock(spec).holder()
        assert holder is not None and holder.command == "phone build" and not holder.stale
        with pytest.raises(DeviceBusy, match="running `phone build`"):
            DeviceLock(spec, say=lambda _m: None).acquire()
    assert DeviceLock(spec).holder() is None
    with DeviceLock(spec):
        assert (phone.sandbox / "agent dir" / "lock.json").is_file()


def test_refresh_keeps_a_long_hold_and_says_when_the_lock_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lock_module, "LOCK_TTL_S", 2.0)  # refreshed every 0.5 s
    spec = DeviceSpec(name="local", workdir=str(tmp_path / "agent"), lock_timeout=1.0)
    said: list[str] = []
    with DeviceLock(spec, command="a long build", say=said.append):
        time.sleep(5.0)  # more than twice the lock's life: only the refresh keeps it ours
        with pytest.raises(DeviceBusy, match="a long build"):
            DeviceLock(spec, command="a second command").acquire()
        # Another command takes it over (as after a missed expiry): the holder says so, once.
        thief = {"owner": "x@elsewhere", "host": "elsewhere", "pid": 1, "command": "a thief", "token": "t"}
        (tmp_path / "agent" / "lock.json").write_text(json.dumps(thief) + "\n")
        (tmp_path / "agent" / "lock.expires").write_text(f"{int(time.time()) + 60} t\n")
        deadline = time.monotonic() + 5.0
        while not said and time.monotonic() < deadline:
            time.sleep(0.1)
    assert len(said) == 1 and said[0].startswith("local: lost the device lock (now: "), said
    assert "running `a thief`" in said[0] and said[0].endswith("; measuring on")
    now = DeviceLock(spec).holder()  # the holder's release left the thief's lock in place
    assert now is not None and now.command == "a thief"
