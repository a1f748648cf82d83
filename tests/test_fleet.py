"""The whole device path against the test bed: agents over real SSH, the ADB double and local.

Covers ``ofa-edge devices check --all --json`` on several devices at once, the trust flow for
an unknown host key, ``ofa-edge bench`` on each kind of device, and a failing device that does
not stop the others.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.testing.fake_adbd import FakeAdbd
from ofa_edge.testing.sshd import SshDevice
from tests.models import conv_model

TFLITE_MODEL = Path(__file__).parent / "data" / "conv8.tflite"  # see data/make_tflite.py


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ofa_edge.cli.main", *args], capture_output=True, text=True, timeout=300
    )


def _ssh_table(name: str, dev: SshDevice, known_hosts: Path, workdir: str) -> str:
    return (
        f'[devices."{name}"]\ntransport = "ssh"\nhost = "{dev.host}"\nport = {dev.port}\n'
        f'user = "{dev.user}"\nkey = "{dev.client_key}"\nknown_hosts = "{known_hosts}"\n'
        f'workdir = "{workdir}"\n\n'
    )


def _adb_table(name: str, spec: DeviceSpec, phone: FakeAdbd) -> str:
    assert spec.adb is not None
    return (
        f'[devices."{name}"]\ntransport = "adb"\nserial = "{spec.adb.serial}"\nadb = "{spec.adb.adb}"\n'
        f'server_port = {spec.adb.server_port}\npython = "{sys.executable}"\n'
        f'workdir = "{phone.sandbox / "agent dir"}"\n\n'
    )


def test_agent_over_ssh_and_adb(
    ssh_device: SshDevice, adb_spec: DeviceSpec, phone: FakeAdbd, tmp_path: Path
) -> None:
    model = conv_model(tmp_path / "conv model.onnx")
    specs = [
        ssh_device.device_spec("pi", workdir="~/agent; $(touch PWNED)"),
        dataclasses.replace(adb_spec, python=sys.executable, workdir=str(phone.sandbox / "agent dir")),
    ]
    for spec in specs:
        with AgentSession(spec) as session:
            assert session.hello["protocol"] == 1
            report = session.bench([model], min_runs=10, min_seconds=0.05)
            (result,) = report.results
            assert result.error is None and result.runs >= 10 and result.median_ms > 0
            assert session.fingerprint()["agent_dir"] == session.workdir
    assert not list(Path(ssh_device.home).rglob("PWNED")) and not list(phone.sandbox.rglob("PWNED"))


def test_check_all_json_and_bench_everywhere(
    ssh_device: SshDevice,
    slow_ssh_device: SshDevice,
    adb_spec: DeviceSpec,
    phone: FakeAdbd,
    tmp_path: Path,
) -> None:
    inventory = tmp_path / "devices.toml"
    inventory.write_text(
        _ssh_table("pi", ssh_device, ssh_device.known_hosts, "~/agent-pi")
        + _ssh_table("slow pi", slow_ssh_device, slow_ssh_device.known_hosts, "~/agent-slow")
        + _adb_table("phone", adb_spec, phone)
        + f'[devices.local]\ntransport = "local"\nworkdir = "{tmp_path / "local agent"}"\n\n'
        + '[devices.gone]\ntransport = "ssh"\nhost = "127.0.0.1"\nport = 9\nconnect_timeout = 3\n'
    )
    res = cli("--json", "devices", "check", "--all", "--inventory", str(inventory))
    assert res.returncode == 4, res.stderr  # "gone" is unreachable, the others are checked anyway
    doc = json.loads(res.stdout)["devices"]
    assert set(doc) == {"pi", "slow pi", "phone", "local", "gone"}
    assert not doc["gone"]["ok"] and doc["gone"]["reference"] == "device-unreachable"
    dirs = {name: doc[name]["fingerprint"]["agent_dir"] for name in ("pi", "slow pi", "phone", "local")}
    assert dirs["pi"].endswith("/agent-pi") and dirs["slow pi"].endswith("/agent-slow")
    assert dirs["phone"] == str(phone.sandbox / "agent dir")
    assert dirs["local"] == str(tmp_path / "local agent"), "results are never mixed up"

    models = [conv_model(tmp_path / "m.onnx"), TFLITE_MODEL]
    for name in ("pi", "phone", "local"):
        for model in models:
            res = cli("--json", "bench", name, str(model), "--runs", "10", "--inventory", str(inventory))
            assert res.returncode == 0, res.stderr
            doc = json.loads(res.stdout)
            assert doc["device"] == name and doc["runs"] >= 10 and doc["median_ms"] > 0
            assert doc["runtime"] == ("tflite" if model.suffix == ".tflite" else "onnxruntime")


def test_unknown_host_key_then_trust(fresh_ssh_device: SshDevice, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    inventory = tmp_path / "devices.toml"
    inventory.write_text(_ssh_table("new-pi", fresh_ssh_device, known, "~/agent"))
    res = cli("devices", "check", "new-pi", "--inventory", str(inventory))
    assert res.returncode == 4  # the device-connection family
    assert "SHA256:" in res.stderr and "ofa-edge devices trust new-pi" in res.stderr
    assert "Traceback" not in res.stderr
    res = cli("devices", "trust", "new-pi", "--fingerprint", "SHA256:wrong", "--inventory", str(inventory))
    assert res.returncode == 2 and "not the expected SHA256:wrong" in res.stderr
    assert not known.exists() or not known.read_text().strip()
    res = cli("--json", "devices", "trust", "new-pi", "--inventory", str(inventory))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["fingerprint"].startswith("SHA256:")
    res = cli("devices", "check", "new-pi", "--inventory", str(inventory))
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("name", ["a b", "x;touch PWNED", "$(touch PWNED)", 'it\'s "q"'])
def test_odd_device_names(name: str, ssh_device: SshDevice, tmp_path: Path) -> None:
    inventory = tmp_path / "devices.toml"
    inventory.write_text(_ssh_table(name.replace('"', '\\"'), ssh_device, ssh_device.known_hosts, "~/odd"))
    res = cli("--json", "devices", "check", name, "--inventory", str(inventory))
    assert res.returncode == 0, res.stderr
    assert name in json.loads(res.stdout)["devices"]
    assert not list(Path(ssh_device.home).rglob("PWNED")) and not list(tmp_path.rglob("PWNED"))


def test_phone_without_python_uses_benchmark_model(
    adb_spec: DeviceSpec, phone: FakeAdbd, tmp_path: Path
) -> None:
    """The benchmark_model path, with the tool's TEST DOUBLE standing in for the real binary."""
    from ofa_edge.testing import fake_benchmark_model

    tool = tmp_path / "benchmark_model"
    script = Path(fake_benchmark_model.__file__).read_text()
    tool.write_text(f"#!{sys.executable}\n" + script.split("\n", 1)[1])
    assert adb_spec.adb is not None
    inventory = tmp_path / "devices.toml"
    inventory.write_text(
        f'[devices.pixel]\ntransport = "adb"\nserial = "{adb_spec.adb.serial}"\nadb = "{adb_spec.adb.adb}"\n'
        f'server_port = {adb_spec.adb.server_port}\nruntime = "tflite"\nbenchmark_model = "{tool}"\n'
        f'workdir = "{phone.sandbox / "data/local/tmp/ofa-edge"}"\n'
    )
    res = cli("--json", "devices", "check", "pixel", "--inventory", str(inventory))
    assert res.returncode == 0, res.stderr
    fp = json.loads(res.stdout)["devices"]["pixel"]["fingerprint"]
    assert fp["runtimes"]["benchmark_model"]["sha256"] and fp["cores"]
    res = cli("--json", "bench", "pixel", str(TFLITE_MODEL), "--runs", "30", "--inventory", str(inventory))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["runs"] >= 30 and doc["median_ms"] > 0  # --min_secs may add runs
    res = cli("bench", "pixel", str(conv_model(tmp_path / "x.onnx")), "--inventory", str(inventory))
    assert res.returncode == 2 and "benchmark_model measures TFLite models" in res.stderr
