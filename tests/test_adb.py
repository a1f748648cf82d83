"""AdbTransport through the real adb client against a fake phone, and the benchmark_model parser."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ofa_edge.devices.adb import AdbNotFound, AdbTransport
from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.android import BenchmarkModelSession
from ofa_edge.devices.backend import default_backend, parse_backend
from ofa_edge.devices.benchmark_model import (
    BenchmarkOutputError,
    benchmark_model_argv,
    parse_benchmark_model,
)
from ofa_edge.devices.inventory import ADB_WORKDIR, load_inventory
from ofa_edge.devices.spec import AdbOptions, DeviceSpec
from ofa_edge.errors import CommandFailed, CommandTimeout, ConfigError, DeviceError, DeviceUnreachable
from ofa_edge.testing import fake_benchmark_model
from ofa_edge.testing.fake_adbd import FakeAdbd

if TYPE_CHECKING:
    from tests.adb_testbed import AdbServer

TFLITE = Path(__file__).parent / "data" / "conv8.tflite"
NONE = {"delegate": "none"}


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` every 50 ms for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def pid_gone(pid: int) -> bool:
    """Whether no process has this id any more (the fake phone reaps its children)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# --- run ---------------------------------------------------------------------------------


def test_run_returns_exit_code_and_separate_streams(transport: AdbTransport, phone: FakeAdbd) -> None:
    res = transport.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert (res.exit_code, res.stdout, res.stderr, res.ok) == (3, "out\n", "err\n", False)
    assert res.device == "fakephone"
    assert transport.run(["pwd"]).stdout == f"{phone.sandbox}\n"
    assert any(event.startswith("OPEN shell,v2,") for event in phone.events)
    assert "AUTH ok" in phone.events, "the server signed the phone's token with its authorized key"


def test_check_raises_command_failed_naming_device_and_cause(transport: AdbTransport) -> None:
    with pytest.raises(CommandFailed) as err:
        transport.run(["sh", "-c", "echo 'model.tflite: no such file' >&2; exit 7"])
    message = str(err.value)
    assert "fakephone" in message and "exited with 7" in message and "no such file" in message
    assert "\n" not in message
    assert err.value.fields["exit_code"] == 7


def test_arguments_arrive_verbatim_and_never_run(transport: AdbTransport, phone: FakeAdbd) -> None:
    nasty = [
        "a b",
        "x; touch PWNED",
        "$(touch PWNED)",
        "`touch PWNED`",
        "it's",
        '"dq" && touch PWNED',
        "back\\slash",
        "*",
        "-n",
        "",
        "tab\there | touch PWNED",
        "ünïcödé",
    ]
    res = transport.run(["printf", "%s\\n", *nasty])
    assert res.stdout.split("\n")[:-1] == nasty
    workdir = phone.sandbox / "dir with space; $(touch PWNED)"
    workdir.mkdir()
    assert transport.run(["pwd"], cwd=str(workdir)).stdout == f"{workdir}\n"
    assert transport.run(["sh", "-c", 'printf "%s" "$1"', "sh", "$HOME"]).stdout == "$HOME"
    assert not list(phone.sandbox.parent.rglob("PWNED"))


def test_timeout_raises_and_kills_the_remote_command(transport: AdbTransport, phone: FakeAdbd) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"fakephone: .*sleep 30.* within 1 s"):
        transport.run(["sh", "-c", "echo $$ > pid; exec sleep 30"], timeout=1.0)
    assert time.monotonic() - started < 15  # cut at its timeout, long before the sleep would end
    pid = int((phone.sandbox / "pid").read_text())
    assert wait_until(lambda: pid_gone(pid), 5), "the remote sleep outlived the adb client"


def test_parallel_commands_share_one_link(transport: AdbTransport) -> None:
    started = time.monotonic()
    transport.run(["true"])
    overhead = time.monotonic() - started  # one command's round trip on this host and phone
    pause = 1.0 + 4 * overhead  # long enough that four in a row cannot hide in the overheads

    def job(i: int) -> str:
        return transport.run(["sh", "-c", f"sleep {pause:.3f}; echo {i}"]).stdout

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(job, range(4)))
    assert outputs == [f"{i}\n" for i in range(4)]
    assert time.monotonic() - started < 3 * pause  # one after the other would take over 4 pauses


@pytest.mark.parametrize("on", ["timeout", "channel close"])
def test_a_remote_process_ignoring_sighup_is_still_ended(
    on: str, transport: AdbTransport, phone: FakeAdbd
) -> None:
    """adbd only sends SIGHUP to a command whose stream closed; ofa-edge kills what it started."""
    ignore_hup = ["sh", "-c", "trap '' HUP; echo $$ > pid; echo $$; exec sleep 60"]
    if on == "timeout":
        with pytest.raises(CommandTimeout):
            transport.run(ignore_hup, timeout=1.0)
    else:
        channel = transport.open_channel(ignore_hup)
        assert channel.read_line(10)
        transport.close()
        assert channel.stderr_tail == "", "the pid line is not shown as the command's stderr"
    pid = int((phone.sandbox / "pid").read_text())
    assert wait_until(lambda: pid_gone(pid), 5), "the process that ignores SIGHUP outlived ofa-edge"


def test_fake_adbd_hangs_up_like_adbd(adb_server: AdbServer, phone: FakeAdbd) -> None:
    """A closed stream gets its command SIGHUP, nothing more: a command that ignores it lives on."""
    assert "connected to" in adb_server.adb("connect", phone.serial).stdout
    script = "trap 'echo hup > hup' HUP; echo $$ > pid; echo up; while :; do sleep 0.05; done"
    client = subprocess.Popen(
        [adb_server.binary, "-s", phone.serial, "shell", "-T", script],
        env=adb_server.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        assert client.stdout is not None and client.stdout.readline() == b"up\n"
        client.kill()  # the adb client goes away: the stream closes
        client.wait(10)
        pid = int((phone.sandbox / "pid").read_text())
        assert wait_until(lambda: (phone.sandbox / "hup").exists(), 20), "no SIGHUP arrived"
        time.sleep(0.3)
        assert not pid_gone(pid), "the double killed a command that survives SIGHUP"
    finally:
        client.kill()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            os.kill(int((phone.sandbox / "pid").read_text()), signal.SIGKILL)  # the shell it started


# --- AUTH ---------------------------------------------------------------------------------


def test_an_unauthorized_host_gets_a_clear_error_until_the_phone_accepts(
    adb_server: AdbServer, tmp_path: Path
) -> None:
    with FakeAdbd(tmp_path / "locked", authorized_keys=[]) as locked:
        try:
            options = AdbOptions(serial=locked.serial, adb=adb_server.binary, server_port=adb_server.port)
            transport = AdbTransport(DeviceSpec(name="pixel", transport="adb", adb=options))
            with pytest.raises(DeviceUnreachable) as err:
                transport.run(["true"])
            message = str(err.value)
            assert f"pixel: adb device '{locked.serial}' is unauthorized" in message and "\n" not in message
            assert "Allow USB debugging" in str(err.value.hint) and "`adb devices`" in str(err.value.hint)
            assert locked.events[:2] == ["AUTH bad signature", "AUTH prompt"]
            assert locked.prompts == [adb_server.public_key], "the test server's own key, not the user's"
            assert f"{locked.serial}\tunauthorized" in adb_server.adb("devices").stdout
            # A phone that turns unauthorized after ofa-edge connected: adb's complaint on a
            # command is an "error: " line followed by advice, and is recognized as such.
            said = adb_server.adb("-s", locked.serial, "shell", "true")
            with pytest.raises(DeviceUnreachable, match="adb: error: device unauthorized") as plain:
                transport._raise_adb_failure(said)
            assert "Allow USB debugging" in str(plain.value.hint)
            locked.accept()  # someone taps "Allow" on the phone
            assert wait_until(lambda: f"{locked.serial}\tdevice" in adb_server.adb("devices").stdout, 10)
            assert transport.run(["echo", "in"]).stdout == "in\n"
        finally:
            adb_server.adb("disconnect", locked.serial)


# --- files -------------------------------------------------------------------------------


def test_push_pull_round_trip_of_a_binary_file(
    transport: AdbTransport, phone: FakeAdbd, tmp_path: Path
) -> None:
    data = os.urandom(2 * 1024 * 1024 + 17)
    local = tmp_path / "blob.bin"
    local.write_bytes(data)
    remote = f"{phone.sandbox}/data/local/tmp/models/blob.bin"
    transport.put(local, remote)
    assert transport.sha256(remote) == hashlib.sha256(data).hexdigest()
    back = tmp_path / "back" / "blob.bin"
    transport.get(remote, back)
    assert back.read_bytes() == data
    assert transport.sha256(f"{phone.sandbox}/missing.bin") is None


def test_file_names_with_spaces_round_trip(transport: AdbTransport, phone: FakeAdbd, tmp_path: Path) -> None:
    local = tmp_path / "my model (v1); $(x).tflite"
    local.write_bytes(b"TFL3\x00\x01 bytes")
    remote = f"{phone.sandbox}/models dir/my model (v1); $(x).tflite"
    transport.put(local, remote)
    assert (phone.sandbox / "models dir" / local.name).read_bytes() == local.read_bytes()
    back = tmp_path / "out dir" / "copy (1).tflite"
    transport.get(remote, back)
    assert back.read_bytes() == local.read_bytes()


def test_file_transfers_stay_in_the_sandbox(transport: AdbTransport, tmp_path: Path) -> None:
    local = tmp_path / "x.bin"
    local.write_bytes(b"x")
    outside = Path(tempfile.gettempdir()) / f"ofa-edge-outside-{uuid.uuid4().hex}.bin"
    with pytest.raises(CommandFailed, match="outside the device sandbox"):
        transport.put(local, str(outside))
    assert not outside.exists()
    with pytest.raises(CommandFailed, match="does not exist"):
        transport.get("/etc/passwd", tmp_path / "passwd")
    assert not (tmp_path / "passwd").exists()


def test_android_scratch_folder_lives_in_the_sandbox(
    transport: AdbTransport, phone: FakeAdbd, tmp_path: Path
) -> None:
    """/data/local/tmp on the double is a sandbox folder, in commands, stdin, output and sync."""
    local = tmp_path / "note.txt"
    local.write_text("hello\n")
    where = "/data/local/tmp/ofa edge"
    remote = f"{where}/note.txt"
    transport.put(local, remote)
    assert phone.android_path(remote).read_text() == "hello\n"
    assert transport.sha256(remote) == hashlib.sha256(b"hello\n").hexdigest()
    assert transport.run(["pwd"], cwd=where).stdout == f"{where}\n"
    real_cwd = transport.run([sys.executable, "-c", "import os; print(os.getcwd())"], cwd=where)
    assert real_cwd.stdout == f"{where}\n", "the host's names of the folder are mapped back"
    assert transport.run(["printf", "%s", remote]).stdout == remote  # no newline: flushed at the end
    assert transport.run(["printf", "%s", "/x/data/local/tmp"]).stdout == "/x/data/local/tmp"
    channel = transport.open_channel(["sh", "-c", 'while read -r p; do cat "$p"; done'])
    channel.write_line(remote)  # a path in the input, as the agent's requests carry them
    assert channel.read_line(10) == "hello"
    channel.close()
    back = tmp_path / "back.txt"
    transport.get(remote, back)
    assert back.read_text() == "hello\n"


def test_adb_devices_default_to_the_android_workdir(
    adb_spec: DeviceSpec, phone: FakeAdbd, tmp_path: Path
) -> None:
    """An inventory phone without ``workdir`` keeps the agent and models in /data/local/tmp."""
    assert adb_spec.adb is not None
    inventory = tmp_path / "devices.toml"
    inventory.write_text(
        f'[devices.pixel]\ntransport = "adb"\nserial = "{adb_spec.adb.serial}"\n'
        f'adb = "{adb_spec.adb.adb}"\nserver_port = {adb_spec.adb.server_port}\n'
        f'python = "{sys.executable}"\nruntime = "tflite"\n'
    )
    spec = load_inventory(inventory)["pixel"]
    assert spec.workdir == ADB_WORKDIR == "/data/local/tmp/ofa-edge-agent"
    with AgentSession(spec) as session:
        assert session.fingerprint()["agent_dir"] == ADB_WORKDIR  # its os.getcwd(), as a phone says it
        (result,) = session.bench([TFLITE], min_runs=3, min_seconds=0).results
    assert result.error is None and result.median_ms is not None and result.median_ms > 0
    assert phone.android_path(f"{ADB_WORKDIR}/ofa_edge_agent.py").is_file()
    assert [p.suffix for p in phone.android_path(f"{ADB_WORKDIR}/models").iterdir()] == [".tflite"]


# --- channels ----------------------------------------------------------------------------


def test_channel_round_trip_and_read_timeout(transport: AdbTransport) -> None:
    channel = transport.open_channel(["cat"])
    line = '{"op": "ping", "text": "a b; $(x) `y` \'z\'"}'
    channel.write_line(line)
    assert channel.read_line(10) == line
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="no line from `cat` within 0.3 s"):
        channel.read_line(0.3)
    assert 0.25 <= time.monotonic() - started < 3
    channel.write_line("again")
    assert channel.read_line(10) == "again"
    channel.close()
    channel.close()


def test_channel_close_ends_the_remote_process(transport: AdbTransport) -> None:
    channel = transport.open_channel(["sh", "-c", "echo $$; exec sleep 60"])
    pid = int(channel.read_line(10))
    transport.close()  # closes the channels it opened
    assert wait_until(lambda: pid_gone(pid), 5), "closing the channel left the remote process running"


def test_channel_reports_an_ended_process_with_its_stderr(transport: AdbTransport) -> None:
    channel = transport.open_channel(["sh", "-c", "echo ready; echo 'agent: bad config' >&2; exit 4"])
    assert channel.read_line(10) == "ready"
    with pytest.raises(DeviceUnreachable, match="exit code 4.*agent: bad config"):
        channel.read_line(10)
    assert channel.stderr_tail == "agent: bad config"
    with pytest.raises(DeviceUnreachable):
        channel.read_line(10)
    with pytest.raises(DeviceUnreachable):
        channel.write_line("anyone?")


# --- failures ----------------------------------------------------------------------------


def test_phone_stopped_mid_session_is_unreachable_not_a_hang(
    transport: AdbTransport, phone: FakeAdbd, adb_spec: DeviceSpec
) -> None:
    channel = transport.open_channel(["cat"])
    channel.write_line("hi")
    assert channel.read_line(10) == "hi"
    other = AdbTransport(adb_spec)
    other.run(["true"])  # connected, so its next call goes straight to adb
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(transport.run, ["sh", "-c", "sleep 30"])
        assert wait_until(lambda: any("sleep 30" in event for event in phone.events), 10)
        started = time.monotonic()
        phone.stop()
        with pytest.raises(DeviceUnreachable, match="went away during"):
            running.result(timeout=20)
    with pytest.raises(DeviceUnreachable, match="ended"):
        channel.read_line(10)
    with pytest.raises(DeviceUnreachable, match="is offline") as offline:
        transport.run(["true"])
    assert "reconnect" in str(offline.value.hint)
    with pytest.raises(DeviceUnreachable, match="adb: .*(offline|closed|not found)"):
        other.run(["true"])
    # Not a hang: every call above has its own timeout. Here they took 15 s: the double's stop()
    # waits up to 5 s for its threads, and adb reports the phone offline after a 10 s connect wait.
    assert time.monotonic() - started < 60


def test_missing_adb_binary_is_a_clear_error(tmp_path: Path) -> None:
    spec = DeviceSpec(name="pixel", transport="adb", adb=AdbOptions(serial="x", adb=str(tmp_path / "no-adb")))
    calls: list[Callable[[AdbTransport], object]] = [
        lambda t: t.run(["true"]),
        lambda t: t.open_channel(["cat"]),
        lambda t: t.get("/x", tmp_path / "x"),
    ]
    for call in calls:
        with pytest.raises(AdbNotFound) as err:
            call(AdbTransport(spec))
        message = str(err.value)
        assert "pixel" in message and "no-adb" in message and "\n" not in message
        assert 'adb = "/path/to/adb"' in message and "apt install adb" in message
        assert isinstance(err.value, DeviceError) and isinstance(err.value, FileNotFoundError)


def test_absent_phones_are_unreachable(adb_server: AdbServer, tmp_path: Path) -> None:
    def spec(serial: str) -> DeviceSpec:
        options = AdbOptions(serial=serial, adb=adb_server.binary, server_port=adb_server.port)
        return DeviceSpec(name="ghost", transport="adb", adb=options)

    with FakeAdbd(tmp_path / "switched off") as gone:
        pass  # its port is closed now: connecting is refused
    nobody = gone.serial
    with pytest.raises(DeviceUnreachable, match=r"ghost: `adb connect .*` failed: .*refused"):
        AdbTransport(spec(nobody)).run(["true"])
    with pytest.raises(DeviceUnreachable, match="'OFA0TEST' is not attached") as err:
        AdbTransport(spec("OFA0TEST")).put(Path(__file__), "/x")
    assert "adb devices" in str(err.value.hint)


def test_two_phones_and_no_serial_ask_for_one(adb_server: AdbServer, tmp_path: Path) -> None:
    with FakeAdbd(tmp_path / "a") as first, FakeAdbd(tmp_path / "b") as second:
        try:
            for fake in (first, second):
                assert "connected to" in adb_server.adb("connect", fake.serial).stdout
            options = AdbOptions(adb=adb_server.binary, server_port=adb_server.port)
            with pytest.raises(DeviceError, match="more than one device") as err:
                AdbTransport(DeviceSpec(name="any", transport="adb", adb=options)).run(["true"])
            assert "serial" in str(err.value.hint)
        finally:
            for fake in (first, second):
                adb_server.adb("disconnect", fake.serial)


# --- the fake adbd, seen by the plain adb client ----------------------------------------------


def test_fake_adbd_serves_v1_exec_interactive_shell_ls_and_getprop(
    adb_server: AdbServer, phone: FakeAdbd
) -> None:
    serial = phone.serial
    assert "connected to" in adb_server.adb("connect", serial).stdout
    assert "model:OfaFakePhone" in adb_server.adb("devices", "-l").stdout
    v1 = adb_server.adb("-s", serial, "shell", "-x", "echo out; echo err >&2; exit 4")
    assert (v1.returncode, v1.stdout) == (0, "out\nerr\n")  # v1: one stream, no exit code
    raw = adb_server.adb("-s", serial, "exec-out", "printf 'a\\000b'")
    assert raw.stdout == "a\x00b"
    interactive = adb_server.adb("-s", serial, "shell", stdin="echo $HOME\nexit 5\n")
    assert (interactive.returncode, interactive.stdout) == (5, f"{phone.sandbox}\n")
    (phone.sandbox / "a file.txt").write_text("hi")
    assert "a file.txt" in adb_server.adb("-s", serial, "ls", str(phone.sandbox)).stdout
    model = adb_server.adb("-s", serial, "shell", "getprop", "ro.product.model")
    assert model.stdout == "OfaFakePhone\n"
    refused = adb_server.adb("-s", serial, "root")  # a service adbd would have; the double does not
    assert refused.returncode != 0 and "closed" in refused.stderr
    assert {"OPEN shell:echo out; echo err >&2; exit 4", "OPEN root:", "SYNC LIST"} <= set(phone.events)


# --- benchmark_model -------------------------------------------------------------------------

OLD_FORMAT = """\
STARTING!
Min num runs: [50]
Num threads: [1]
Min warmup runs: [1]
Graph: [/data/local/tmp/mobilenet_quant_v1_224.tflite]
Use nnapi : [0]
Loaded model /data/local/tmp/mobilenet_quant_v1_224.tflite
resolved reporter
Initialized session in 3.587ms.
[Init Phase] - Memory usage: max resident set size = 4.66797 MB, total malloc-ed size = 1.52649 MB
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 \
seconds.
count=35 first=15887 curr=14166 min=14081 max=15887 avg=14277.1 std=295

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 \
seconds.
count=70 first=14178 curr=14162 min=14075 max=14398 avg=14171.4 std=56

Average inference timings in us: Warmup: 14277.1, Init: 3587, no stats: 14171.4
[Overall] - Memory usage: max resident set size = 6.04297 MB, total malloc-ed size = 1.74847 MB
"""

INFO_FORMAT = """\
INFO: STARTING!
INFO: Num threads: [1]
INFO: Graph: [/data/local/tmp/ofa_subnet.tflite]
INFO: #threads used for CPU inference: [1]
INFO: Loaded model /data/local/tmp/ofa_subnet.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: The input model file size (MB): 13.9786
INFO: Initialized session in 25.017ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if \
exceeding 150 seconds.
INFO: count=24 first=37093 curr=20356 min=20167 max=37093 avg=21233.1 std=3347

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if \
exceeding 150 seconds.
INFO: count=50 first=20382 curr=20367 min=20161 max=20658 avg=20327.6 std=95

INFO: Inference timings in us: Init: 25017, First inference: 37093, Warmup (avg): 21233.1, \
Inference (avg): 20327.6
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE.
INFO: Memory footprint delta from the start of the tool (MB): init=31.3477 overall=38.2148
"""

LOGCAT_PERCENTILES = """\
I tflite  : Running benchmark for at least 10 iterations and at least 0.5 seconds but terminate if \
exceeding 150 seconds.
I tflite  : count=1 curr=211669
I tflite  : Running benchmark for at least 25 iterations and at least 1 seconds but terminate if \
exceeding 150 seconds.
I tflite  : count=25 first=187533 curr=140990 min=140071 max=195121 avg=145528 std=13583 p5=140545 \
median=141253 p95=187533
I tflite  : Inference timings in us: Init: 92318, First inference: 187533, Warmup (avg): 211669, \
Inference (avg): 145528
I tflite  : Memory footprint delta from the start of the tool (MB): init=54.2852 overall=73.4102
I tflite  : Overall peak memory footprint (MB) via periodic monitoring: 80.5
"""

SCIENTIFIC = """\
Loaded model ./mobilenet_v1_1.0_224.tflite
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 \
seconds.
count=1 curr=3512391

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 \
seconds.
count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798

Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, \
Inference (avg): 2.95034e+06
Peak memory footprint (MB): init=4.92969 overall=138.809
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            OLD_FORMAT,
            {
                "count": 70,
                "first_ms": 14.178,
                "min_ms": 14.075,
                "max_ms": 14.398,
                "avg_ms": 14.1714,
                "std_ms": 0.056,
                "percentiles_ms": {},
                "median_ms": None,
                "init_ms": 3.587,
                "first_inference_ms": None,
                "warmup_avg_ms": 14.2771,
                "inference_avg_ms": 14.1714,
                "memory_mb": {
                    "init_phase_max_resident_set_size": 4.66797,
                    "init_phase_total_malloc_ed_size": 1.52649,
                    "overall_phase_max_resident_set_size": 6.04297,
                    "overall_phase_total_malloc_ed_size": 1.74847,
                },
            },
            id="old-bare-lines",
        ),
        pytest.param(
            INFO_FORMAT,
            {
                "count": 50,
                "curr_ms": 20.367,
                "avg_ms": 20.3276,
                "std_ms": 0.095,
                "init_ms": 25.017,
                "first_inference_ms": 37.093,
                "warmup_avg_ms": 21.2331,
                "inference_avg_ms": 20.3276,
                "memory_mb": {"delta_init": 31.3477, "delta_overall": 38.2148},
            },
            id="info-prefixed",
        ),
        pytest.param(
            LOGCAT_PERCENTILES,
            {
                "count": 25,
                "avg_ms": 145.528,
                "percentiles_ms": {"p5": 140.545, "median": 141.253, "p95": 187.533},
                "median_ms": 141.253,
                "warmup_avg_ms": 211.669,
                "memory_mb": {"delta_init": 54.2852, "delta_overall": 73.4102, "peak_periodic": 80.5},
            },
            id="logcat-percentiles",
        ),
        pytest.param(
            SCIENTIFIC,
            {
                "count": 50,
                "avg_ms": 2950.34,
                "max_ms": 3189.954,
                "warmup_avg_ms": 3512.39,
                "inference_avg_ms": 2950.34,
                "memory_mb": {"peak_init": 4.92969, "peak_overall": 138.809},
            },
            id="scientific-notation",
        ),
        pytest.param(
            "count=5 curr=8000(all same)\n",
            {"count": 5, "first_ms": 8.0, "min_ms": 8.0, "max_ms": 8.0, "avg_ms": 8.0, "std_ms": 0.0},
            id="all-same-no-summary",
        ),
    ],
)
def test_parse_benchmark_model_variants(text: str, expected: dict[str, object]) -> None:
    result = parse_benchmark_model(text)
    assert result.raw == text
    for name, value in expected.items():
        got = getattr(result, name)
        assert got == (pytest.approx(value) if value is not None else None), name


RELEASES = Path(__file__).parent / "data" / "benchmark_model"


def recorded(release: str) -> str:
    """A release's output as written in tests/data/benchmark_model (its ``#`` header dropped)."""
    lines = (RELEASES / f"{release}.txt").read_text().splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("#"))


def test_parse_tf_2_0_output_has_no_median() -> None:
    """TF 2.0 prints no percentiles: the parser gives no median rather than the mean."""
    result = parse_benchmark_model(recorded("tf-2.0.0"))
    assert (result.count, result.first_ms, result.min_ms, result.max_ms) == (77, 12.95, 12.688, 14.217)
    assert (result.avg_ms, result.std_ms) == pytest.approx((12.9864, 0.231))
    assert result.percentiles_ms == {} and result.median_ms is None
    assert (result.init_ms, result.warmup_avg_ms, result.inference_avg_ms) == pytest.approx(
        (4.129, 13.1483, 12.9864)
    )
    assert result.first_inference_ms is None and result.memory_mb == {}


def test_parse_litert_output_takes_the_measured_loops_percentiles() -> None:
    """LiteRT prints percentiles after every statistics line, the one-run warm-up's too."""
    result = parse_benchmark_model(recorded("litert-2.2.0"))
    assert (result.count, result.avg_ms, result.std_ms) == (50, 503.118, 14.206)
    assert result.percentiles_ms == {"p5": 490.385, "median": 499.71, "p95": 538.916}
    assert result.median_ms == 499.71
    assert (result.init_ms, result.first_inference_ms, result.warmup_avg_ms) == (61.804, 612.377, 612.377)
    assert result.memory_mb == {"delta_init": 41.0234, "delta_overall": 58.9102}
    warmup = parse_benchmark_model(recorded("litert-2.2.0").split("\n\n")[0])
    assert (warmup.count, warmup.min_ms, warmup.max_ms, warmup.std_ms) == (1, 612.377, 612.377, 0.0)
    assert warmup.median_ms == 612.377


@pytest.mark.parametrize("release", fake_benchmark_model.RELEASES)
def test_fake_benchmark_model_prints_like_the_recorded_release(release: str, tmp_path: Path) -> None:
    """The double's lines have the recorded release's shapes (same prefixes, keys and order)."""
    model = tmp_path / "m.tflite"
    model.write_bytes(b"TFL3" * 1000)
    tool = fake_benchmark_model.install(tmp_path / "benchmark_model", release)
    slow = "--fake_latency_us=" + ("600000" if release == fake_benchmark_model.LITERT else "13000")
    argv = [str(tool), f"--graph={model}", "--num_runs=30", "--min_secs=0", slow]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr

    def shapes(text: str) -> list[str]:
        keys = (
            r"count=",
            r"Running benchmark",
            r"nference timings in us",
            r"Initialized session",
            r"Loaded model",
        )
        picked = [line for line in text.splitlines() if any(k in line for k in keys)]
        return [re.sub(r"[-+]?\d[\d.e+]*", "N", re.sub(r"\[.*\]|/\S+", "P", line)) for line in picked]

    assert shapes(proc.stdout) == shapes(recorded(release))
    parsed = parse_benchmark_model(proc.stdout + proc.stderr)
    assert (parsed.median_ms is None) == (release == fake_benchmark_model.TF_2_0)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "no `count=... avg=...` timing line (it printed nothing)"),
        (
            "ERROR: Could not open 'm.tflite'.\nERROR: Failed to mmap model m.tflite\n"
            "ERROR: Benchmarking failed.\n",
            "no `count=... avg=...` timing line (last lines: ERROR: Could not open",
        ),
        (
            OLD_FORMAT.split("\n\n")[0]
            + "\nRunning benchmark for at least 50 iterations\nSegmentation fault\n",
            "stopped",
        ),
        ("count=0\n", "no avg= or curr= value"),
    ],
    ids=["empty", "tool-error", "crashed-mid-run", "no-runs"],
)
def test_parse_benchmark_model_rejects_output_without_timings(text: str, complaint: str) -> None:
    with pytest.raises(BenchmarkOutputError) as err:
        parse_benchmark_model(text)
    assert complaint in str(err.value) and err.value.hint


def test_benchmark_model_argv() -> None:
    argv = benchmark_model_argv(
        "/data/local/tmp/benchmark_model",
        "/sdcard/m 1.tflite",
        4,
        50,
        10,
        1.5,
        parse_backend("p", NONE, "tflite"),
    )
    assert argv == [
        "/data/local/tmp/benchmark_model",
        "--graph=/sdcard/m 1.tflite",
        "--num_threads=4",
        "--num_runs=50",
        "--warmup_runs=10",
        "--min_secs=1.5",
        "--use_xnnpack=false",
    ]
    pinned = benchmark_model_argv("bm", "m.tflite", 1, 1, 0, 0, default_backend("tflite"), cpus=[6, 4, 5])
    assert pinned[:3] == ["taskset", "70", "bm"] and pinned[-1] == "--use_xnnpack=true"
    gpu = benchmark_model_argv(
        "bm", "m.tflite", 1, 1, 0, 0, parse_backend("p", {"delegate": "gpu"}, "tflite")
    )
    assert gpu[-3:] == ["--use_gpu=true", "--gpu_precision_loss_allowed=false", "--use_xnnpack=false"]
    nnapi = parse_backend("p", {"delegate": "nnapi", "precision": "fp16"}, "tflite")
    assert benchmark_model_argv("bm", "m.tflite", 1, 1, 0, 0, nnapi)[-3:] == [
        "--use_nnapi=true",
        "--nnapi_allow_fp16=true",
        "--use_xnnpack=false",
    ]
    for bad in (
        {"threads": 0},
        {"runs": 0},
        {"warmup": -1},
        {"min_secs": -1.0},
        {"cpus": []},
        {"cpus": [-1]},
    ):
        kwargs = {
            "threads": 1,
            "runs": 1,
            "warmup": 0,
            "min_secs": 0.0,
            "backend": default_backend("tflite"),
            **bad,
        }
        with pytest.raises(ConfigError):
            benchmark_model_argv("bm", "m.tflite", **kwargs)  # type: ignore[arg-type]


def test_fake_benchmark_model_through_the_fake_phone(
    transport: AdbTransport, phone: FakeAdbd, tmp_path: Path
) -> None:
    tool = tmp_path / "benchmark_model"
    script = Path(fake_benchmark_model.__file__).read_text()
    tool.write_text(f"#!{sys.executable}\n" + script.split("\n", 1)[1])  # a self-contained copy
    tool.chmod(0o755)
    model = tmp_path / "subnet 1.tflite"
    model.write_bytes(os.urandom(200_000))
    base = f"{phone.sandbox}/data/local/tmp/ofa"
    transport.put(tool, f"{base}/benchmark_model")
    transport.put(model, f"{base}/{model.name}")
    argv = benchmark_model_argv(
        f"{base}/benchmark_model", f"{base}/{model.name}", 2, 40, 5, 0, default_backend("tflite"), cpus=[0]
    )
    res = transport.run([*argv, "--fake_latency_us=12500"])
    assert "count=" in res.stdout and "count=" not in res.stderr  # INFO on stdout, as LiteRT logs
    assert "Created TensorFlow Lite XNNPACK delegate" in res.stderr  # TFLite's own logger: stderr
    result = parse_benchmark_model(res.stdout + res.stderr)
    assert result.count == 40
    assert result.avg_ms == pytest.approx(12.5, rel=0.03)
    assert result.median_ms is not None and result.min_ms <= result.median_ms <= result.max_ms
    assert result.inference_avg_ms == pytest.approx(result.avg_ms, rel=1e-4)
    assert result.init_ms is not None and result.init_ms > 0
    missing = transport.run([*argv[:3], f"--graph={base}/absent.tflite"], check=False)
    assert missing.exit_code == 1 and not missing.stdout.count("count=")
    with pytest.raises(BenchmarkOutputError, match="Benchmarking failed"):
        parse_benchmark_model(missing.stdout + missing.stderr)
    old = transport.run([*argv[:3], f"--graph={base}/absent.tflite", "--fake_release=tf-2.0.0"], check=False)
    assert old.exit_code == fake_benchmark_model.ABORT_EXIT and "Failed to mmap model" in old.stderr


@pytest.mark.parametrize("release", fake_benchmark_model.RELEASES)
def test_benchmark_model_session_never_passes_a_mean_off_as_a_median(
    release: str, adb_spec: DeviceSpec, phone: FakeAdbd, tmp_path: Path
) -> None:
    """A phone without Python, in the Android workdir: a build without percentiles gives its
    mean as median_ms and says so (median_is_mean); LiteRT gives its real median."""
    tool = fake_benchmark_model.install(tmp_path / "benchmark_model", release)
    assert adb_spec.adb is not None
    spec = dataclasses.replace(
        adb_spec,
        runtime="tflite",
        workdir=ADB_WORKDIR,
        adb=dataclasses.replace(adb_spec.adb, benchmark_model=tool),
    )
    with BenchmarkModelSession(spec) as session:
        (result,) = session.bench([TFLITE], min_runs=30, min_seconds=0).results
    assert result.error is None and result.runs >= 30
    assert result.median_is_mean == (release == fake_benchmark_model.TF_2_0)
    assert result.mean_ms is not None and result.median_ms is not None
    if result.median_is_mean:
        assert result.median_ms == result.mean_ms
    else:
        assert result.median_ms != result.mean_ms  # the tool's own median, not its mean
    pushed = phone.android_path(f"{ADB_WORKDIR}/models")
    assert [p.suffix for p in pushed.iterdir()] == [".tflite"], "the model went to the Android workdir"
