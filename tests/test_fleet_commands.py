"""Device commands on a fleet of 8 test-bed devices at once, some of them failing: ``bench``,
``lut build``, ``push`` and ``specialize`` (several names, ``--all``, ``--group``), as users run
them (subprocesses).

The fleet: ``pi`` (a real sshd on loopback), ``local``, ``box-a`` and ``box-b`` (this machine,
each with its own agent folder) work; ``gone`` (nothing listens on its port), ``stranger`` (a host
key nobody trusted), ``wrong-key`` (a key the device refuses) and ``bare`` (a Python without any
runtime) fail. Every device runs at once on this host's 2 cores (shared with other work), so
these tests check function (each working device's result is valid and its own, each failure is
one line naming its device, the summary and the --json records), not speed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ofa_edge.lut import LatencyTable
from ofa_edge.lut.keys import enumerate_ops
from ofa_edge.supernet.registry import get_supernet_info
from ofa_edge.testing.sshd import SshDevice
from tests.adb_testbed import free_port
from tests.test_cli import DEBUG_HINT, run
from tests.test_fleet import _ssh_table

SUPERNET = "ofa-mbv3-cifar10"
#: Fleet mechanics on the smaller v1 layout, named: the default's own path is test_cli_commands'.
PINNED = ("--supernet", SUPERNET)
WORKING = ["pi", "local", "box-a", "box-b"]
#: Each failing device and the error it fails with (its reference).
FAILING = {
    "gone": "device-unreachable",
    "stranger": "host-key",
    "wrong-key": "auth-failed",
    "bare": "agent-error",
}
FLEET = ["pi", "gone", "local", "stranger", "box-a", "wrong-key", "box-b", "bare"]  # inventory order


@pytest.fixture(scope="module")
def fleet(ssh_device: SshDevice, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The 8 devices' inventory (every one in group ``lab``, the working ones also in ``up``),
    its folder, and the environment (a cache shared by the module's commands)."""
    folder = tmp_path_factory.mktemp("fleet")
    wrong = folder / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    bare = folder / "bare-python"  # a Python that sees no installed package: no runtime at all
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    bare.chmod(0o755)
    lab, up = 'groups = ["lab"]\n\n', 'groups = ["lab", "up"]\n\n'

    def local(name: str, extra: str = "") -> str:
        return f'[devices.{name}]\ntransport = "local"\nworkdir = "{folder / name}"\n{extra}'

    port = free_port()
    inventory = folder / "devices.toml"
    inventory.write_text(
        _ssh_table("pi", ssh_device, ssh_device.known_hosts, "~/agent-fleet") + up
        + f'[devices.gone]\nhost = "127.0.0.1"\nport = {port}\nconnect_timeout = 3\n' + lab
        + local("local", up)
        + _ssh_table("stranger", ssh_device, ssh_device.untrusted_known_hosts, "~/agent-stranger") + lab
        + local("box-a", up)
        + _ssh_table("wrong-key", ssh_device, ssh_device.known_hosts, "~/agent-wrong").replace(
            str(ssh_device.client_key), str(wrong)
        ) + lab
        + local("box-b", up)
        + local("bare", f'python = "{bare}"\n' + lab)
    )  # fmt: skip
    env = {**os.environ, "OFA_EDGE_CACHE": str(folder / "cache"), "OFA_EDGE_TABLES": ""}
    return {"folder": folder, "inventory": ("--inventory", str(inventory)), "env": env}


def fleet_run(fleet: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    """``ofa-edge ARGS --inventory ...`` run in the fleet's folder with its environment."""
    return subprocess.run(
        [sys.executable, "-m", "ofa_edge.cli.main", *args, *fleet["inventory"]],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=fleet["folder"],
        env=fleet["env"],
    )


def records(res: subprocess.CompletedProcess[str], command: str, names: list[str]) -> dict[str, Any]:
    """The --json fleet document's records by device, checked: one per device in order, its
    counts, and one ``ofa-edge: error: NAME: ...`` line on stderr per failed device."""
    doc = json.loads(res.stdout)
    assert doc["schema"] == "ofa-edge/fleet/1" and doc["command"] == command
    assert [r["device"] for r in doc["devices"]] == names
    by_name = {r["device"]: r for r in doc["devices"]}
    failed = [n for n in names if not by_name[n]["ok"]]
    assert (doc["ok"], doc["failed"], doc["exit_code"]) == (
        len(names) - len(failed),
        len(failed),
        res.returncode,
    )
    errors = [line for line in res.stderr.splitlines() if line.startswith("ofa-edge: error: ")]
    assert errors == [f"ofa-edge: error: {by_name[n]['error']['message']}" for n in failed], res.stderr
    for name in failed:
        record = by_name[name]
        assert record["error"]["message"].startswith(f"{name}: ") and "\n" not in record["error"]["message"]
        assert record["result"] is None
    assert "Traceback" not in res.stderr and DEBUG_HINT not in res.stderr
    return by_name


def test_bench_all_runs_every_device_and_keeps_each_failure(fleet: dict[str, Any]) -> None:
    from tests.models import conv_model

    model = conv_model(fleet["folder"] / "conv.onnx")
    res = fleet_run(fleet, "--json", "bench", "--all", str(model), "--runs", "10")
    by_name = records(res, "bench", FLEET)
    assert res.returncode == 5, res.stderr  # connection (4) and agent (5) errors: the device family
    for name in WORKING:
        record = by_name[name]
        assert record["ok"] and record["error"] is None, record
        result = record["result"]
        assert result["device"] == name and result["runs"] >= 10 and result["median_ms"] > 0
        assert record["measured_ms"] == result["median_ms"] and record["seconds"] > 0
    for name, reference in FAILING.items():
        assert by_name[name]["error"]["reference"] == reference, by_name[name]
    assert "RuntimeMissing" in by_name["bare"]["error"]["message"]


@pytest.fixture(scope="module")
def built(fleet: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """``lut build --group lab`` at one resolution, one pass (text output)."""
    return fleet_run(fleet, "lut", "build", "--group", "lab", *PINNED, "--resolutions", "24", "--passes", "1")


def test_lut_build_on_a_group_writes_each_devices_table(
    fleet: dict[str, Any], built: subprocess.CompletedProcess[str]
) -> None:
    spec = get_supernet_info(SUPERNET).spec
    ops = {op.key for op in enumerate_ops(spec, [24])}
    errors = [line for line in built.stderr.splitlines() if line.startswith("ofa-edge: error: ")]
    failed = {line.split(":")[2].strip() for line in errors}
    assert failed == set(FAILING), built.stderr  # a working device's failure shows its own line
    assert built.returncode == 5, built.stderr  # connection (4) and agent (5) errors: the device family
    for name in WORKING:
        table = LatencyTable.load(fleet["folder"] / f"{name}_{SUPERNET}_fp32_t1.json")
        assert table.device.name == name and set(table.entries[24]) == ops
        assert all(entry.median_ms > 0 for entry in table.entries[24].values())
    agent_dirs = {
        LatencyTable.load(fleet["folder"] / f"{n}_{SUPERNET}_fp32_t1.json").device.fingerprint.get(
            "agent_dir"
        )
        for n in WORKING
    }
    assert len(agent_dirs) == len(WORKING), "each table was measured by its own device's agent"
    assert not any(
        (fleet["folder"] / f"{name}_{SUPERNET}_fp32_t1.json").exists()
        for name in ["gone", "stranger", "wrong-key"]
    )

    *rows, total = built.stdout.strip().splitlines()
    assert rows[0].split() == ["device", "status", "table", "seconds"] and total == "4 of 8 devices ok"
    cells = {row.split()[0]: row.split() for row in rows[1:]}
    assert list(cells) == FLEET
    for name in WORKING:
        assert cells[name][1:3] == ["ok", f"{name}_{SUPERNET}_fp32_t1.json"]
    for name, reference in FAILING.items():
        assert cells[name][1:4] == ["FAILED", f"({reference})", "-"]
    errors = [line for line in built.stderr.splitlines() if line.startswith("ofa-edge: error: ")]
    assert sorted(line.split()[2] for line in errors) == sorted(f"{name}:" for name in FAILING)
    for name in WORKING:  # each device's own progress line, ending ok
        assert f"{name}: ok" in built.stderr.splitlines()


def test_push_to_several_names_verifies_each_against_its_own_table(
    fleet: dict[str, Any], built: subprocess.CompletedProcess[str]
) -> None:
    folder = fleet["folder"]
    arch = folder / "min.json"
    get_supernet_info(SUPERNET).spec.space.min_arch(24).save(arch)
    res = run("export", str(arch), *PINNED, "--format", "onnx", "--out", str(folder / "min.onnx"))
    assert res.returncode == 0, res.stderr
    names = [*WORKING, "gone"]
    res = fleet_run(fleet, "--json", "push", *names, "min.onnx", "--verify", "--rounds", "1")
    by_name = records(res, "push", names)
    assert res.returncode == 4 and by_name["gone"]["error"]["reference"] == "device-unreachable"
    manifests = set()
    for name in WORKING:
        record, result = by_name[name], by_name[name]["result"]
        table = LatencyTable.load(folder / record["table"])
        assert table.device.name == name == result["device"]["name"]
        assert record["subnet"] == result["arch"] and record["measured_ms"] > 0
        assert record["predicted_ms"] == pytest.approx(
            table.predict(get_supernet_info(SUPERNET).spec.space.min_arch(24))
        )
        manifest = folder / result["manifest"]
        assert json.loads(manifest.read_text())["device"]["name"] == name and name in manifest.name
        manifests.add(manifest)
    assert len(manifests) == len(WORKING), "no device's manifest overwrote another's"


def test_fleet_exit_code_is_the_family_every_failure_shares() -> None:
    from ofa_edge.errors import AgentError, DeviceUnreachable, HostKeyError, LutError, fleet_exit_code

    assert fleet_exit_code([]) == 0
    assert fleet_exit_code([DeviceUnreachable("a"), HostKeyError("b")]) == 4  # connection
    assert fleet_exit_code([DeviceUnreachable("a"), AgentError("b")]) == 5  # device
    assert fleet_exit_code([AgentError("b"), DeviceUnreachable("a")]) == 5  # in any order
    assert fleet_exit_code([DeviceUnreachable("a"), LutError("b")]) == 1  # nothing narrower


def test_validate_a_group_then_specialize_several(
    fleet: dict[str, Any], built: subprocess.CompletedProcess[str]
) -> None:
    """``lut validate --group up`` calibrates each working device's table (a plot each);
    ``specialize`` on two of them and a device that is down reuses each calibrated table and
    gives each device its own folder, subnet, measurement and cost."""
    folder = fleet["folder"]
    res = fleet_run(
        fleet, "--json", "lut", "validate", "--group", "up", *PINNED, "--samples", "4", "--fit", "2",
        "--rounds", "1", "--plot", "fit.png",
    )  # fmt: skip
    by_name = records(res, "lut-validate", WORKING)
    assert res.returncode == 0, res.stderr
    for name in WORKING:
        result = by_name[name]["result"]
        table = folder / f"{name}_{SUPERNET}_fp32_t1.json"
        assert Path(by_name[name]["table"]).resolve() == Path(result["table"]).resolve() == table.resolve()
        assert LatencyTable.load(table).calibration is not None
        assert result["subnets"] == 4 and folder / result["plot"] == folder / f"fit.{name}.png"
        assert (folder / f"fit.{name}.png").is_file()

    names = ["local", "pi", "gone"]
    for name in names[:2]:
        (folder / "spec" / name).mkdir(parents=True)
        table_name = f"{name}_{SUPERNET}_fp32_t1.json"
        shutil.copyfile(folder / table_name, folder / "spec" / name / table_name)
    res = fleet_run(
        fleet,
        "--json",
        "specialize",
        *names,
        *PINNED,
        "--out",
        "spec",
        "--resolutions",
        "24",
        "--passes",
        "1",
    )
    by_name = records(res, "specialize", names)
    assert res.returncode == 4 and by_name["gone"]["error"]["reference"] == "device-unreachable"
    for name in names[:2]:
        record, result = by_name[name], by_name[name]["result"]
        assert result["device"] == name and result["table"]["reused"], "a calibrated table is not re-measured"
        assert Path(record["table"]) == Path("spec") / name / f"{name}_{SUPERNET}_fp32_t1.json"
        assert record["subnet"] == result["search"]["arch"] and record["measured_ms"] > 0
        assert record["predicted_ms"] == result["deployment"]["predicted_ms"] > 0
        assert "device-s" in record["cost"] and "Wh" in record["cost"]
        summary = json.loads((folder / result["summary_file"]).read_text())
        assert Path(result["summary_file"]).parent == Path("spec") / name and summary["device"] == name
        assert (
            Path(result["deployment"]["file"]["local"]).resolve().parent == (folder / "spec" / name).resolve()
        )


def test_run_fleet_bounds_workers_keeps_failures_and_cancels_on_interrupt() -> None:
    """The runner itself: at most ``max_workers`` devices at once, results by device in order,
    each failure kept and told; an interrupt starts no further device."""
    import threading
    import time

    from ofa_edge.devices.fleet import run_fleet
    from ofa_edge.devices.spec import DeviceSpec
    from ofa_edge.errors import DeviceUnreachable

    specs = [DeviceSpec(name=f"d{i}") for i in range(8)]
    running, peak, lock, told = 0, 0, threading.Lock(), []

    def work(spec: DeviceSpec) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.3)  # long enough for 3 to overlap on a loaded host
        with lock:
            running -= 1
        if spec.name in ("d2", "d5"):
            raise DeviceUnreachable(f"{spec.name}: down")
        return spec.name.upper()

    results = run_fleet(specs, work, lambda name, message: told.append((name, message)), max_workers=3)
    assert list(results) == [s.name for s in specs] and peak == 3
    assert [n for n, r in results.items() if isinstance(r, DeviceUnreachable)] == ["d2", "d5"]
    assert all(results[n] == n.upper() for n in results if n not in ("d2", "d5"))
    assert sorted(told) == [("d2", "FAILED: d2: down"), ("d5", "FAILED: d5: down")]

    started = []

    def interrupted(spec: DeviceSpec) -> str:
        started.append(spec.name)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_fleet(specs, interrupted, max_workers=1)
    assert started == ["d0"]


@pytest.mark.parametrize("terminal", [True, False])
def test_device_lines_one_line_per_device(terminal: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal each device keeps one line (its latest status, or its step's bar); in a
    log each status and each step's start and end is a ``NAME: ...`` line; --json: nothing."""
    import io

    from ofa_edge.cli.output import DeviceLines

    class Stderr(io.StringIO):
        def isatty(self) -> bool:
            return terminal

    for json_mode in (False, True):
        err = Stderr()
        monkeypatch.setattr(sys, "stderr", err)
        lines = DeviceLines(["pi", "box"], json_mode)
        step = lines.device("pi").counter("lut pi", "op")
        for done in range(4):
            step(done, 3)
        lines.device("box").stage("table", "measuring")
        lines.status("box", "FAILED: box: down")
        lines.close()
        text = err.getvalue()
        if json_mode:
            assert text == ""
        elif terminal:  # tqdm: redrawn in place, one line per device
            assert "pi: lut pi:   0%" in text and "3/3" in text and "box: FAILED: box: down" in text
            assert "\x1b[A" in text and "pi: lut pi 0/3 op" not in text, text  # moved up, redrawn
        else:
            assert text.splitlines() == [
                "pi: lut pi 0/3 op",
                "pi: lut pi 3/3 op",
                "box: [table] measuring",
                "box: FAILED: box: down",
            ]
