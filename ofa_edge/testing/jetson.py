"""Test doubles, not for production use: NVIDIA Jetson boards as files and tools on this machine.

What the device agent reads on a Jetson, written under a folder: ``/etc/nv_tegra_release`` and
``/etc/nvpmodel.conf``; ``/proc/cpuinfo`` and the device tree; a ``/sys`` with cpufreq policies,
thermal zones, the GPU's devfreq node, the EMC clock in debugfs and the INA3221 power monitor,
in the JetPack 5+ hwmon layout (``in<N>_label``, bus mV ``in<N>_input``, mA ``curr<N>_input``)
or the JetPack 4 iio layout (``rail_name_<k>``, ``in_power<k>_input`` mW, ...); and the tools
``nvpmodel -q``, ``tegrastats`` and ``trtexec``, as scripts on PATH. The layouts and output
formats follow field notes §4.1, rbonghi/jetson_stats' readers and published trtexec logs; the
numbers (clocks, power, latency) are made up, chosen so a test can predict what the agent
reports: every rail reads a constant power, and the ``trtexec`` double's timings follow the
ONNX file's size. ``JetsonDouble.env`` points the agent there (``OFA_EDGE_AGENT_SYSFS``,
``_PROCFS``, ``_ETC`` and PATH); the tools read their state from the same folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

#: The agent's folder knobs (device_agents/ofa_edge_agent.py ``SYSFS``, ``PROCFS``, ``ETC``).
SYSFS_ENV, PROCFS_ENV, ETC_ENV = "OFA_EDGE_AGENT_SYSFS", "OFA_EDGE_AGENT_PROCFS", "OFA_EDGE_AGENT_ETC"


@dataclasses.dataclass(frozen=True)
class Rail:
    """One INA3221 channel: its label and constant bus voltage (mV) and current (mA)."""

    label: str
    mv: int
    ma: int

    @property
    def mw(self) -> float:
        return self.mv * self.ma / 1000.0


@dataclasses.dataclass(frozen=True)
class Board:
    """A Jetson as the agent sees it; see ``ORIN_NANO_JP6`` and ``NANO_JP4``."""

    name: str
    nv_tegra_release: str
    model: str
    compatible: tuple[str, ...]
    cpu_part: tuple[int, int, int, int]  # implementer, variant, part, revision
    cpus: int
    cpu_khz: tuple[int, int]  # cpufreq min, max
    gpu: str  # the devfreq device's name
    gpu_device: str  # its platform device under /sys/devices
    gpu_hz: tuple[int, int]  # devfreq min, max
    emc_rate_file: str  # under /sys: BPMP debugfs (Orin) or clk debugfs (Nano)
    emc_hz: int
    thermal: tuple[tuple[str, float], ...]  # zone type, °C
    rail_layout: str  # "hwmon" (JetPack 5+) or "iio" (JetPack 4)
    ina_device: str  # the I2C client, e.g. 1-0040
    ina_parent: str  # the I2C adapter's folder under /sys/devices
    rails: tuple[Rail, ...]
    modes: tuple[tuple[int, str], ...]  # nvpmodel.conf's POWER_MODEL IDs and names
    mode: int
    tensorrt: str  # the version the trtexec double reports
    jetson_clocks: bool = False  # min clocks raised to max, as jetson_clocks leaves them

    @property
    def mode_name(self) -> str:
        return dict(self.modes)[self.mode]

    @property
    def input_mw(self) -> float:
        """The module's input power: VDD_IN / POM_5V_IN where present, else the rails' sum."""
        inputs = [r.mw for r in self.rails if r.label in ("VDD_IN", "POM_5V_IN")]
        return inputs[0] if inputs else sum(r.mw for r in self.rails)


def _cpuinfo(board: Board, features: str) -> str:
    implementer, variant, part, revision = board.cpu_part
    return "".join(
        f"processor\t: {i}\nBogoMIPS\t: 62.50\nFeatures\t: {features}\n"
        f"CPU implementer\t: 0x{implementer:02x}\nCPU architecture: 8\nCPU variant\t: 0x{variant:x}\n"
        f"CPU part\t: 0x{part:03x}\nCPU revision\t: {revision}\n\n"
        for i in range(board.cpus)
    )


ORIN_NANO_JP6 = Board(
    name="jetson-orin-nano-jp6",
    nv_tegra_release="# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, "
    "DATE: Mon May  6 17:34:21 UTC 2024",
    model="NVIDIA Jetson Orin Nano Developer Kit",
    compatible=("nvidia,p3768-0000+p3767-0005", "nvidia,p3767-0005", "nvidia,tegra234"),
    cpu_part=(0x41, 0, 0xD42, 1),
    cpus=6,
    cpu_khz=(115200, 1510400),
    gpu="17000000.gpu",
    gpu_device="platform/bus@0/17000000.gpu",
    gpu_hz=(306000000, 624750000),
    emc_rate_file="kernel/debug/bpmp/debug/clk/emc/rate",
    emc_hz=2133000000,
    thermal=(("cpu-thermal", 47.5), ("gpu-thermal", 46.1), ("soc0-thermal", 46.8), ("tj-thermal", 47.5)),
    rail_layout="hwmon",
    ina_device="1-0040",
    ina_parent="platform/bus@0/c240000.i2c/i2c-1",
    rails=(Rail("VDD_IN", 5064, 1046), Rail("VDD_CPU_GPU_CV", 5056, 215), Rail("VDD_SOC", 5064, 262)),
    modes=((0, "15W"), (1, "7W")),
    mode=0,
    tensorrt="10.3.0",
)
NANO_JP4 = Board(
    name="jetson-nano-jp4",
    nv_tegra_release="# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, "
    "DATE: Sat Feb 19 17:05:08 UTC 2022",
    model="NVIDIA Jetson Nano Developer Kit",
    compatible=("nvidia,p3449-0000-b00+p3448-0000", "nvidia,jetson-nano", "nvidia,tegra210"),
    cpu_part=(0x41, 1, 0xD07, 1),
    cpus=4,
    cpu_khz=(102000, 1479000),
    gpu="57000000.gpu",
    gpu_device="57000000.gpu",
    gpu_hz=(76800000, 921600000),
    emc_rate_file="kernel/debug/clk/emc/clk_rate",
    emc_hz=1600000000,
    thermal=(
        ("AO-therm", 41.0),
        ("CPU-therm", 36.5),
        ("GPU-therm", 34.0),
        ("PLL-therm", 33.0),
        ("PMIC-Die", 100.0),
        ("thermal-fan-est", 35.25),
    ),
    rail_layout="iio",
    ina_device="6-0040",
    ina_parent="7000c400.i2c/i2c-6",
    rails=(Rail("POM_5V_IN", 5000, 637), Rail("POM_5V_GPU", 5000, 90), Rail("POM_5V_CPU", 5000, 122)),
    modes=((0, "MAXN"), (1, "5W")),
    mode=0,
    tensorrt="8.2.1",
)


def trt_banner_number(version: str) -> str:
    """trtexec's banner number: 8.6.2 -> 8602, 10.3.0 -> 100300."""
    major, minor, patch = (int(v) for v in version.split("."))
    return f"{major}{minor:02d}{patch:02d}" if major >= 10 else f"{major}{minor}{patch:02d}"


#: The tools, as Python scripts reading the board's state (``state.json``) beside them.
_NVPMODEL = """
import json, re, sys
state = json.load(open(STATE))
if sys.argv[1:] != ["-q"]:
    sys.exit("nvpmodel test double: only -q is emulated")
mode = int(open(state["root"] + "/var/lib/nvpmodel/status").read().split(":")[1])
conf = open(state["root"] + "/etc/nvpmodel.conf").read()
names = dict((int(i), n) for i, n in re.findall(r"< POWER_MODEL ID=(\\d+) NAME=(\\S+) >", conf))
print("NV Power Mode: " + names[mode])
print(mode)
"""
_TEGRASTATS = """
import json, sys, time
state = json.load(open(STATE))
interval = int(sys.argv[sys.argv.index("--interval") + 1]) / 1000 if "--interval" in sys.argv else 1.0
while True:
    print(time.strftime("%m-%d-%Y %H:%M:%S ") + state["tegrastats"], flush=True)
    time.sleep(interval)
"""
_TRTEXEC = """
import hashlib, json, math, os, sys, time
state = json.load(open(STATE))
version = state["tensorrt"]
major, minor = (int(v) for v in version.split(".")[:2])
number = state["banner"]
with open(state["log"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
opts = dict(a[2:].split("=", 1) if "=" in a else (a[2:], "") for a in sys.argv[1:])
stamp = time.strftime("[%m/%d/%Y-%H:%M:%S] ")
print("&&&& RUNNING TensorRT.trtexec [TensorRT v" + number + "]" + (" [b26]" if major >= 10 else "")
      + " # trtexec " + " ".join(sys.argv[1:]), flush=True)
def info(text):
    print(stamp + "[I] " + text, flush=True)
def fail(text):
    print(stamp + "[E] " + text, flush=True)
    print("&&&& FAILED TensorRT.trtexec [TensorRT v" + number + "] # trtexec " + " ".join(sys.argv[1:]),
          flush=True)
    sys.exit(1)
if "help" in opts:
    print("=== Model Options ===\\n  --onnx=<file>               ONNX model")
    sys.exit(0)
build_only = "skipInference" if (major, minor) >= (8, 6) else "buildOnly"
for unknown in set(("skipInference", "buildOnly")) - set((build_only,)):
    if unknown in opts:
        fail("Unknown option: --" + unknown)
if major >= 10:
    info("TF32 is enabled by default. Add --noTF32 flag to further improve accuracy with some "
         "performance cost.")
info("=== Model Options ===")
precision = "int8" if "int8" in opts else "fp16" if "fp16" in opts else "fp32"
info("Precision: " + {"fp32": "FP32", "fp16": "FP32+FP16", "int8": "FP32+INT8"}[precision])
info("TensorRT version: " + version)
if "onnx" in opts:
    data = open(opts["onnx"], "rb").read()
    engine = {"test double engine": version, "precision": precision, "onnx_bytes": len(data),
              "onnx_sha256": hashlib.sha256(data).hexdigest()}
    info("Start parsing network model.")
    info("[TRT] Engine generation completed in " + str(state["build_s"] - 0.08) + " seconds.")
    info("Engine built in " + str(state["build_s"]) + " sec.")
    with open(opts["saveEngine"], "w") as f:
        json.dump(engine, f)
    info("Created engine with size: 1.25 MiB")
elif "loadEngine" in opts:
    engine = json.load(open(opts["loadEngine"]))
    if engine["test double engine"] != version:
        fail("[TRT] 6: The engine plan file is not compatible with this version of TensorRT, "
             "expecting library "
             "version " + version + " got " + engine["test double engine"] + ", please rebuild.")
    info("Engine loaded in 0.0132 sec.")
else:
    fail("Model missing or format not recognized")
if build_only in opts:
    sys.exit(print("&&&& PASSED TensorRT.trtexec [TensorRT v" + number + "] # trtexec") or 0)
gpu = 0.2 + engine["onnx_bytes"] / 1e6 / {"fp32": 1, "fp16": 2, "int8": 4}[engine["precision"]]
e2e = gpu + 0.05
queries = max(int(opts.get("iterations", "10")), math.ceil(float(opts.get("duration", "3")) * 1000 / e2e))
info("Starting inference")
time.sleep(queries * e2e / 1000)
info("Warmup completed 20 queries over 200 ms")
info("Timing trace has " + str(queries) + " queries over " + str(round(queries * e2e / 1000, 5)) + " s")
info("")
info("=== Performance summary ===")
info("Throughput: " + str(round(1000 / e2e, 4)) + " qps")
def stats(ms):
    fields = "min = {:g} ms, max = {:g} ms, mean = {:g} ms, median = {:g} ms".format(
        ms * 0.97, ms * 1.2, ms * 1.01, ms)
    if (major, minor) >= (8, 6):
        return fields + (", percentile(90%) = {:g} ms, percentile(95%) = {:g} ms, "
                         "percentile(99%) = {:g} ms").format(
            ms * 1.05, ms * 1.08, ms * 1.15)
    return fields + ", percentile(99%) = {:g} ms".format(ms * 1.15)
info("Latency: " + stats(e2e))
if (major, minor) < (8, 6):
    info("End-to-End Host Latency: " + stats(e2e * 1.1))
info("Enqueue Time: " + stats(0.04))
info("H2D Latency: " + stats(0.03))
info("GPU Compute Time: " + stats(gpu))
info("D2H Latency: " + stats(0.02))
info("Total Host Walltime: " + str(round(queries * e2e / 1000, 5)) + " s")
info("Total GPU Compute Time: " + str(round(queries * gpu / 1000, 5)) + " s")
print("&&&& PASSED TensorRT.trtexec [TensorRT v" + number + "] # trtexec", flush=True)
"""


def _tegrastats_line(board: Board) -> str:
    """One tegrastats line in the board's JetPack form (field notes §4.1): rails as ``cur/avg``
    (JetPack 4) or ``curmW/avgmW`` (JetPack 5/6), the GPU clock as a number or a per-GPC array."""
    emc_mhz, gpu_mhz = board.emc_hz // 1000000, board.gpu_hz[1] // 1000000
    cpus = ",".join(f"2%@{board.cpu_khz[1] // 1000}" for _ in range(board.cpus))
    temps = " ".join(f"{name.split('-')[0]}@{c:g}C" for name, c in board.thermal)
    if board.rail_layout == "iio":
        rails = " ".join(f"{r.label} {r.mw:.0f}/{r.mw:.0f}" for r in board.rails)
        return (f"RAM 2519/3956MB (lfb 3x4MB) SWAP 0/1978MB CPU [{cpus}] EMC_FREQ 9%@{emc_mhz} "
                f"GR3D_FREQ 0%@{gpu_mhz} APE 25 {temps} {rails}")  # fmt: skip
    rails = " ".join(f"{r.label} {r.mw:.0f}mW/{r.mw:.0f}mW" for r in board.rails)
    return (f"RAM 2330/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [{cpus}] EMC_FREQ 3%@{emc_mhz} "
            f"GR3D_FREQ 0%@[{gpu_mhz}] VIC_FREQ 0%@115 APE 200 {temps} {rails}")  # fmt: skip


@dataclasses.dataclass
class JetsonDouble:
    """A board written under ``root``: see the module. ``build_s`` is the engine build time the
    trtexec double prints; ``trtexec_calls`` lists each call's arguments."""

    board: Board
    root: Path
    build_s: float = 0.84

    def __post_init__(self) -> None:
        for path, text in self._files().items():
            target = self.root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        for link, points_to in self._links().items():
            (self.root / link).parent.mkdir(parents=True, exist_ok=True)
            (self.root / link).symlink_to(points_to)
        state = {
            "root": str(self.root),
            "tensorrt": self.board.tensorrt,
            "banner": trt_banner_number(self.board.tensorrt),
            "build_s": self.build_s,
            "log": str(self.root / "trtexec-calls.jsonl"),
            "tegrastats": _tegrastats_line(self.board),
        }
        (self.root / "state.json").write_text(json.dumps(state))
        for tool, body in (("nvpmodel", _NVPMODEL), ("tegrastats", _TEGRASTATS), ("trtexec", _TRTEXEC)):
            script = self.root / "bin" / tool
            script.parent.mkdir(exist_ok=True)
            header = f"#!{sys.executable}\n# A test double of NVIDIA's {tool} (ofa_edge.testing.jetson).\n"
            script.write_text(f"{header}STATE = {str(self.root / 'state.json')!r}\n{body}")
            script.chmod(0o755)

    @property
    def env(self) -> dict[str, str]:
        """What makes the agent read this board: its folder knobs and the tools on PATH."""
        return {
            SYSFS_ENV: str(self.root / "sys"),
            PROCFS_ENV: str(self.root / "proc"),
            ETC_ENV: str(self.root / "etc"),
            "PATH": f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    @property
    def trtexec_calls(self) -> list[list[str]]:
        log = self.root / "trtexec-calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []

    def _files(self) -> dict[str, str]:
        b = self.board
        features = (
            "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop"
        )
        files = {
            "etc/nv_tegra_release": b.nv_tegra_release + "\n",
            "etc/nvpmodel.conf": "".join(f"< POWER_MODEL ID={i} NAME={n} >\nCPU_ONLINE CORE_0 1\n\n"
                                         for i, n in b.modes),
            "var/lib/nvpmodel/status": f"pmode:{b.mode:04d}\n",
            "proc/cpuinfo": _cpuinfo(b, features),
            "proc/meminfo": "MemTotal:        7802768 kB\nMemFree:         5012344 kB\n",
            "proc/device-tree/model": b.model + "\0",
            "proc/device-tree/compatible": "".join(c + "\0" for c in b.compatible),
            "sys/devices/system/cpu/online": f"0-{b.cpus - 1}\n",
            "sys/" + b.emc_rate_file: f"{b.emc_hz}\n",
            "sys/bus/i2c/devices/i2c-1/name": "Tegra I2C adapter\n",  # not a power monitor
        }  # fmt: skip
        low = b.cpu_khz[1] if b.jetson_clocks else b.cpu_khz[0]
        for cpu in range(b.cpus):
            policy = f"sys/devices/system/cpu/cpu{cpu}/cpufreq/"
            files |= {
                policy + "scaling_governor": "schedutil\n",
                policy + "scaling_cur_freq": f"{b.cpu_khz[1]}\n",
                policy + "scaling_min_freq": f"{low}\n",
                policy + "scaling_max_freq": f"{b.cpu_khz[1]}\n",
            }
        for i, (zone, celsius) in enumerate(b.thermal):
            files[f"sys/class/thermal/thermal_zone{i}/type"] = zone + "\n"
            files[f"sys/class/thermal/thermal_zone{i}/temp"] = f"{round(celsius * 1000)}\n"
        gpu = f"sys/devices/{b.gpu_device}/"
        files |= {
            gpu + "of_node/name": "gpu\0",
            gpu + f"devfreq/{b.gpu}/cur_freq": f"{b.gpu_hz[1]}\n",
            gpu + f"devfreq/{b.gpu}/min_freq": f"{b.gpu_hz[1] if b.jetson_clocks else b.gpu_hz[0]}\n",
            gpu + f"devfreq/{b.gpu}/max_freq": f"{b.gpu_hz[1]}\n",
            gpu + f"devfreq/{b.gpu}/governor": "nvhost_podgov\n",
        }
        ina = f"sys/devices/{b.ina_parent}/{b.ina_device}/"
        if b.rail_layout == "hwmon":  # JetPack 5+: the mainline ina3221 driver
            files[ina + "name"] = "ina3221\n"
            for n, rail in enumerate(b.rails, 1):
                files |= {
                    ina + f"hwmon/hwmon1/in{n}_label": rail.label + "\n",
                    ina + f"hwmon/hwmon1/in{n}_input": f"{rail.mv}\n",
                    ina + f"hwmon/hwmon1/curr{n}_input": f"{rail.ma}\n",
                    ina + f"hwmon/hwmon1/curr{n}_max": "8000\n",
                }
            files[ina + "hwmon/hwmon1/in7_label"] = "sum of shunt voltages\n"
            files[ina + "hwmon/hwmon1/in7_input"] = "0\n"
            files[ina + "hwmon/hwmon1/name"] = "ina3221\n"
        else:  # JetPack 4: NVIDIA's ina3221x iio driver
            files[ina + "name"] = "ina3221x\n"
            for k, rail in enumerate(b.rails):
                files |= {
                    ina + f"iio:device0/rail_name_{k}": rail.label + "\n",
                    ina + f"iio:device0/in_power{k}_input": f"{rail.mw:.0f}\n",
                    ina + f"iio:device0/in_current{k}_input": f"{rail.ma}\n",
                    ina + f"iio:device0/in_voltage{k}_input": f"{rail.mv}\n",
                }
        return files

    def _links(self) -> dict[str, str]:
        """The sysfs symlinks the agent goes through: the class and bus views of devices."""
        b = self.board
        return {
            f"sys/class/devfreq/{b.gpu}": f"../../devices/{b.gpu_device}/devfreq/{b.gpu}",
            f"sys/devices/{b.gpu_device}/devfreq/{b.gpu}/device": "../..",
            f"sys/bus/i2c/devices/{b.ina_device}": f"../../../devices/{b.ina_parent}/{b.ina_device}",
        }
