"""The agent names a device's CPU, board and SoC: ARM cores decoded from cpuinfo's implementer and
part numbers (a Raspberry Pi's "Hardware : BCM2835" line is never the CPU), big.LITTLE as counts
per core type, the board from the device tree or the phone's properties; the phone path without
Python decodes the same way.

The fixtures are /proc trees written from the kernels' formats (arm64 ``c_show``, 32-bit ARM,
Raspberry Pi's trailer lines, old Android kernels that print the IDs once, x86), read by the real
``fingerprint()`` through the agent's ``OFA_EDGE_AGENT_PROCFS`` knob.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ofa_edge.devices.agent import AgentSession, agent_source
from ofa_edge.devices.android import BenchmarkModelSession
from ofa_edge.devices.spec import AdbOptions, DeviceSpec, local_device
from ofa_edge.devices.transport import Channel, RunResult, Transport

PROCFS_ENV, SYSFS_ENV = "OFA_EDGE_AGENT_PROCFS", "OFA_EDGE_AGENT_SYSFS"
ARM64_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop"


def arm_cpuinfo(cores: Sequence[tuple[int, int, int, int]], *, arch: int = 8, model_name: str = "") -> str:
    """Per-processor blocks as Linux prints them; ``cores`` holds (implementer, variant, part,
    revision) per CPU; 32-bit kernels add a "model name" line."""
    blocks = []
    for i, (implementer, variant, part, revision) in enumerate(cores):
        blocks.append(
            f"processor\t: {i}\n"
            + (f"model name\t: {model_name}\n" if model_name else "")
            + f"BogoMIPS\t: 108.00\nFeatures\t: {ARM64_FEATURES}\n"
            f"CPU implementer\t: 0x{implementer:02x}\nCPU architecture: {arch}\n"
            f"CPU variant\t: 0x{variant:x}\nCPU part\t: 0x{part:03x}\nCPU revision\t: {revision}\n\n"
        )
    return "".join(blocks)


def x86_cpuinfo(cores: int, model: str) -> str:
    return "".join(
        f"processor\t: {i}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 165\n"
        f"model name\t: {model}\nstepping\t: 5\ncpu MHz\t\t: 2900.000\ncache size\t: 16384 KB\n\n"
        for i in range(cores)
    )


A72, A53, A55, A78, X1, A78AE = 0xD08, 0xD03, 0xD05, 0xD41, 0xD44, 0xD42

PI4_CPUINFO = arm_cpuinfo([(0x41, 0, A72, 3)] * 4) + (
    "Hardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 10000000a1b2c3d4\n"
    "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
)
SD888_PROPS = {
    "ro.product.manufacturer": "samsung",
    "ro.product.model": "SM-G991U",
    "ro.soc.manufacturer": "QTI",
    "ro.soc.model": "SM8350",
    "ro.board.platform": "lahaina",
    "ro.hardware": "qcom",
    "ro.build.version.release": "13",
}
SD888_CPUINFO = arm_cpuinfo([(0x41, 2, A55, 0)] * 4 + [(0x41, 1, A78, 1)] * 3 + [(0x41, 1, X1, 0)]) + (
    "Hardware\t: Qualcomm Technologies, Inc SM8350\n"
)


@dataclasses.dataclass(frozen=True)
class Device:
    """A /proc tree (cpuinfo, device-tree model and compatible) and Android properties, with the
    identity the fingerprint must report for it."""

    cpuinfo: str
    cpu_model: str
    board: str | None = None
    soc: str | None = None
    model: str | None = None  # /proc/device-tree/model
    compatible: tuple[str, ...] = ()
    props: dict[str, str] = dataclasses.field(default_factory=dict)

    def write(self, root: Path) -> Path:
        """The /proc tree under ``root``; returns its folder."""
        proc = root / "proc"
        proc.mkdir(parents=True)
        (proc / "cpuinfo").write_text(self.cpuinfo)
        (proc / "meminfo").write_text("MemTotal:        3884136 kB\nMemFree:          123456 kB\n")
        if self.model is not None:
            (proc / "device-tree").mkdir()
            (proc / "device-tree" / "model").write_bytes(self.model.encode() + b"\0")
            (proc / "device-tree" / "compatible").write_bytes(
                b"".join(c.encode() + b"\0" for c in self.compatible)
            )
        return proc


DEVICES = {
    "raspberry-pi-4": Device(
        PI4_CPUINFO,
        "Cortex-A72",
        "Raspberry Pi 4 Model B Rev 1.4",
        model="Raspberry Pi 4 Model B Rev 1.4",
        compatible=("raspberrypi,4-model-b", "brcm,bcm2711"),
    ),
    # 32-bit Raspberry Pi OS in a chroot/container: no device tree, a generic "model name"
    "raspberry-pi-3-armv7": Device(
        arm_cpuinfo([(0x41, 0, A53, 4)] * 4, arch=7, model_name="ARMv7 Processor rev 4 (v7l)")
        + "Hardware\t: BCM2835\nRevision\t: a02082\nSerial\t\t: 00000000deadbeef\n"
        "Model\t\t: Raspberry Pi 3 Model B Rev 1.2\n",
        "Cortex-A53",
        "Raspberry Pi 3 Model B Rev 1.2",
    ),
    # mainline arm64 kernel: neither "Hardware" nor "model name"; cpu0-3 little, cpu4-5 big
    "rk3399-mainline": Device(
        arm_cpuinfo([(0x41, 0, A53, 4)] * 4 + [(0x41, 0, A72, 2)] * 2),
        "4x Cortex-A53 + 2x Cortex-A72",
        "Pine64 RockPro64 v2.1",
        model="Pine64 RockPro64 v2.1",
        compatible=("pine64,rockpro64-v2.1", "pine64,rockpro64", "rockchip,rk3399"),
    ),
    "snapdragon-888-phone": Device(
        SD888_CPUINFO,
        "4x Cortex-A55 + 3x Cortex-A78 + 1x Cortex-X1",
        "samsung SM-G991U",
        "QTI SM8350",
        props=SD888_PROPS,
    ),
    # Android 10: Kryo 485 numbers, no ro.soc.* properties yet
    "snapdragon-855-phone": Device(
        arm_cpuinfo([(0x51, 0xD, 0x805, 14)] * 4 + [(0x51, 0xD, 0x804, 14)] * 4)
        + "Hardware\t: Qualcomm Technologies, Inc SM8150\n",
        "4x Qualcomm Kryo 4xx/5xx Silver + 4x Qualcomm Kryo 4xx Gold",
        "Google Pixel 4",
        "msmnile",
        props={
            "ro.product.manufacturer": "Google",
            "ro.product.model": "Pixel 4",
            "ro.board.platform": "msmnile",
        },
    ),
    # an old Android kernel prints the IDs once, for the boot CPU: no counts can be told
    "msm8994-old-kernel": Device(
        "Processor\t: AArch64 Processor rev 2 (aarch64)\n"
        + "".join(f"processor\t: {i}\n" for i in range(8))
        + f"Features\t: fp asimd aes pmull sha1 sha2 crc32\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0x{A53:03x}\nCPU revision\t: 2\n\n"
        "Hardware\t: Qualcomm Technologies, Inc MSM8994\n",
        "Cortex-A53",
    ),
    "jetson-agx-orin": Device(
        arm_cpuinfo([(0x41, 0, A78AE, 1)] * 12),
        "Cortex-A78AE",
        "NVIDIA Jetson AGX Orin Developer Kit",
        model="NVIDIA Jetson AGX Orin Developer Kit",
        compatible=("nvidia,p3737-0000+p3701-0005", "nvidia,p3701-0005", "nvidia,tegra234"),
    ),
    "jetson-agx-xavier": Device(
        arm_cpuinfo([(0x4E, 0, 0x004, 0)] * 8),
        "NVIDIA Carmel",
        "Jetson-AGX",
        model="Jetson-AGX",
        compatible=("nvidia,p2972-0000", "nvidia,tegra194"),
    ),
    "apple-m1-asahi": Device(
        arm_cpuinfo([(0x61, 1, 0x022, 1)] * 4 + [(0x61, 1, 0x023, 1)] * 4),
        "4x Apple M1 Icestorm + 4x Apple M1 Firestorm",
        "Apple Mac mini (M1, 2020)",
        model="Apple Mac mini (M1, 2020)",
        compatible=("apple,j274", "apple,t8103", "apple,arm-platform"),
    ),
    "future-arm-core": Device(arm_cpuinfo([(0x41, 0, 0xDFF, 0)] * 2), "Arm part 0xdff"),
    "x86": Device(
        x86_cpuinfo(2, "Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz"), "Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz"
    ),
}


def fake_getprop(folder: Path, props: dict[str, str]) -> Path:
    """A ``getprop`` that lists ``props`` as Android's does (``[key]: [value]``)."""
    folder.mkdir(parents=True, exist_ok=True)
    listing = "".join(f"[{k}]: [{v}]\n" for k, v in sorted(props.items()))
    (folder / "props.txt").write_text(listing)
    script = folder / "getprop"
    script.write_text(f"#!/bin/sh\ncat '{folder / 'props.txt'}'\n")
    script.chmod(0o755)
    return folder


def agent_on(device: Device, root: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh copy of the agent module reading ``device``'s /proc (and an empty /sys), with its
    ``getprop`` on PATH for phones (as under Termux)."""
    monkeypatch.setenv(PROCFS_ENV, str(device.write(root)))
    (root / "sys").mkdir()
    monkeypatch.setenv(SYSFS_ENV, str(root / "sys"))
    if device.props:
        monkeypatch.setenv(
            "PATH", f"{fake_getprop(root / 'bin', device.props)}{os.pathsep}{os.environ['PATH']}"
        )
    spec = importlib.util.spec_from_file_location("ofa_edge_agent_under_test", agent_source())
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def identity(fp: dict[str, Any]) -> tuple[Any, ...]:
    """What names the device: (cpu_model, board, soc)."""
    return fp["cpu_model"], fp["board"], fp["soc"]


@pytest.mark.parametrize("name", list(DEVICES))
def test_fingerprint_names_cpu_board_and_soc(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = DEVICES[name]
    fp = agent_on(device, tmp_path, monkeypatch).fingerprint()
    assert identity(fp) == (device.cpu_model, device.board, device.soc)
    assert fp["compatible"] == list(device.compatible)
    assert fp["memory_mb"] == 3884136 // 1024, "meminfo is read under the same root"
    assert {"arch", "cores", "governors", "runtimes", "conditions", "agent_version"} <= set(fp)


def test_cpu_parts_carry_ids_stepping_and_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fp = agent_on(DEVICES["snapdragon-888-phone"], tmp_path, monkeypatch).fingerprint()
    assert fp["core_types"] == [
        {"name": "Cortex-A55", "implementer": "0x41", "part": "0xd05", "stepping": "r2p0", "count": 4},
        {"name": "Cortex-A78", "implementer": "0x41", "part": "0xd41", "stepping": "r1p1", "count": 3},
        {"name": "Cortex-X1", "implementer": "0x41", "part": "0xd44", "stepping": "r1p0", "count": 1},
    ]
    old = agent_on(DEVICES["msm8994-old-kernel"], tmp_path / "old", monkeypatch).fingerprint()
    assert [(c["name"], c["count"]) for c in old["core_types"]] == [("Cortex-A53", None)]


def test_pi_identified_through_a_running_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The knob reaches the deployed agent as the host starts it (the local device)."""
    device = DEVICES["raspberry-pi-4"]
    monkeypatch.setenv(PROCFS_ENV, str(device.write(tmp_path)))
    spec = dataclasses.replace(local_device(), workdir=str(tmp_path / "agent"))
    with AgentSession(spec) as session:
        fp = session.fingerprint()
    assert identity(fp) == (device.cpu_model, device.board, device.soc)
    assert fp["core_types"][0]["count"] == 4 and fp["core_types"][0]["stepping"] == "r0p3"


class PhoneShell(Transport):
    """A TEST DOUBLE of a phone's ``adb shell`` without Python: getprop, /proc/cpuinfo, uname,
    nproc; ``benchmark_model`` already pushed."""

    def __init__(self, device: Device, binary: Path) -> None:
        super().__init__("phone")
        self.device, self.digest = device, hashlib.sha256(binary.read_bytes()).hexdigest()

    def _run(self, argv: Sequence[str], *, timeout: float, check: bool, cwd: str | None) -> RunResult:
        listing = "".join(f"[{k}]: [{v}]\n" for k, v in self.device.props.items())
        answers = {
            ("getprop",): listing,
            ("cat", "/proc/cpuinfo"): self.device.cpuinfo,
            ("uname", "-m"): "aarch64\n",
            ("nproc",): "8\n",
        }
        out = answers.get(tuple(argv))
        if argv[0] == "sha256sum":
            out = f"{self.digest}  {argv[1]}\n"
        elif argv[0] == "chmod":
            out = ""
        code = 1 if out is None else 0
        return RunResult(self.name, " ".join(argv), code, out or "", "" if code == 0 else "not found")

    def open_channel(self, argv: Sequence[str], *, cwd: str | None = None) -> Channel:
        raise AssertionError("a phone without Python runs no agent")

    def put(self, local: Path, remote: str) -> None:
        raise AssertionError("benchmark_model is already on the phone")

    def get(self, remote: str, local: Path) -> None:
        raise AssertionError("nothing is fetched")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("name", ["snapdragon-888-phone", "snapdragon-855-phone"])
def test_phone_without_python_decodes_as_the_agent_does(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = DEVICES[name]
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF test double")
    spec = DeviceSpec(
        name="phone",
        transport="adb",
        runtime="tflite",
        workdir="/data/local/tmp/ofa-edge",
        adb=AdbOptions(serial="R58M123ABC", benchmark_model=binary),
    )
    host_side = BenchmarkModelSession(spec, PhoneShell(device, binary)).fingerprint()
    on_phone = agent_on(device, tmp_path / "termux", monkeypatch).fingerprint()
    assert identity(host_side) == (device.cpu_model, device.board, device.soc)
    assert host_side["core_types"] == on_phone["core_types"] and identity(host_side) == identity(on_phone)
    assert host_side["arch"] == "aarch64" and host_side["cores"] == 8
    assert host_side["os"] == ("Android 13" if "ro.build.version.release" in device.props else "Android")
