"""ofa-edge device agent: measures models with the device's own runtime, speaks JSON lines.

Deployed by the host into the device's workdir and started as ``python3 ofa_edge_agent.py serve``
over ONE long-lived channel (SSH exec, adb shell or a local subprocess). Needs Python >= 3.8, the
standard library, numpy and whichever runtime the device has (onnxruntime, ai_edge_litert or
tflite_runtime, or TensorRT's trtexec on a Jetson); nothing from the host package.

Protocol (one JSON object per line, both ways): requests ``{"id": N, "op": OP, ...}``; replies
``{"id": N, "ok": true, "result": {...}}`` or ``{"id": N, "ok": false, "error": {"type", "message"}}``.
A ``bench`` streams ``{"id": N, "event": "model", "result": {...}}`` per model before its reply;
its ``backend`` (the host's ``Backend.request()``) names the providers or delegate to run on, and a
model not wholly on the backend's accelerator (``target``) ends the bench with a
``PlacementRefused`` error naming its coverage, unless ``allow_partial`` (its result then carries
its ``placement``);
given a ``reference`` model, each model is timed in bursts alternating with it and its result
adds ``ratio`` (model / reference, robust to the device's speed changing), ``ref_median_ms``
and ``bursts``. Where the device has INA3221 power rails (Jetsons), a result adds ``energy_mj``
per inference and the rails' mean power; trtexec's adds its ``engine`` and ``end_to_end_ms``.
Each batch of models runs in a child process with a per-model timeout (as TVM measures): a model
that crashes or hangs is reported for that model, and the rest are measured in a fresh child.
"""

import glob
import hashlib
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time

AGENT_VERSION = "1.3"
PROTOCOL = 1
#: The folder read in place of /sys for clocks, governors and temperatures. A test knob: the test
#: bed points it at a simulated cpufreq tree (tests/testbed.py ``SimulatedCpufreq``).
SYSFS = os.environ.get("OFA_EDGE_AGENT_SYSFS", "/sys")
#: The folder read in place of /proc for cpuinfo, meminfo and the device tree: the same kind of
#: test knob, to identify a Raspberry Pi, a Jetson or a phone from fixture files.
PROCFS = os.environ.get("OFA_EDGE_AGENT_PROCFS", "/proc")
#: The folder read in place of /etc (a Jetson's L4T release and nvpmodel.conf): the same kind of
#: test knob, for the Jetson test doubles (ofa_edge/testing/jetson.py).
ETC = os.environ.get("OFA_EDGE_AGENT_ETC", "/etc")


# --- device conditions and fingerprint ------------------------------------------------------


def _read(path, default=None):
    try:
        with open(path, errors="replace") as f:
            return f.read().strip()
    except OSError:
        return default


def _run(argv, timeout=5.0):
    """A tool's stdout, or None when it is missing or fails (vcgencmd, nvpmodel ...)."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


_THROTTLE_BITS = {
    0: "under-voltage",
    1: "arm-frequency-capped",
    2: "throttled",
    3: "soft-temperature-limit",
    16: "under-voltage-occurred",
    17: "arm-frequency-capping-occurred",
    18: "throttling-occurred",
    19: "soft-temperature-limit-occurred",
}


def throttle_state():
    """Raspberry Pi firmware flags from ``vcgencmd get_throttled``, or None elsewhere."""
    out = _run(["vcgencmd", "get_throttled"])
    if not out or "=" not in out:
        return None
    value = int(out.split("=", 1)[1], 16)
    return {
        "raw": hex(value),
        "now": [n for b, n in _THROTTLE_BITS.items() if b < 16 and value >> b & 1],
        "since_boot": [n for b, n in _THROTTLE_BITS.items() if b >= 16 and value >> b & 1],
    }


def temperatures():
    temps = {}
    for zone in sorted(glob.glob(SYSFS + "/class/thermal/thermal_zone*")):
        value = _read(zone + "/temp")
        if value and value.lstrip("-").isdigit():
            temps[_read(zone + "/type", os.path.basename(zone))] = int(value) / 1000.0
    return temps


def cpu_frequencies():
    freqs = {}
    for cpu in sorted(glob.glob(SYSFS + "/devices/system/cpu/cpu[0-9]*/cpufreq")):
        value = _read(cpu + "/scaling_cur_freq")
        if value and value.isdigit():
            freqs[cpu.split("/")[-2]] = int(value) // 1000  # MHz
    return freqs


#: Android's thermal status levels (PowerManager.THERMAL_STATUS_*), by number.
THERMAL_STATUS = ("none", "light", "moderate", "severe", "critical", "emergency", "shutdown")
_HAL_TEMPERATURE = re.compile(r"Temperature\{mValue=(-?[\d.]+), mType=-?\d+, mName=(.*?), mStatus=\d+\}")


def parse_thermalservice(text):
    """Android's ``dumpsys thermalservice``: its ``Thermal Status`` (0 none .. 6 shutdown) and the
    HAL's current temperatures (not the cached ones, which may be stale), or None when it
    printed no status (not Android, or no permission to dump). The host reads phones without
    Python with this same function."""
    status, temperatures, section = None, {}, None
    for line in text.splitlines():
        if line.startswith("Thermal Status:") and line.split(":", 1)[1].strip().isdigit():
            status = int(line.split(":", 1)[1])
        elif line and not line[0].isspace():
            section = line.strip()
        elif section == "Current temperatures from HAL:":
            match = _HAL_TEMPERATURE.search(line)
            if match:
                temperatures[match.group(2)] = float(match.group(1))
    if status is None:
        return None
    name = THERMAL_STATUS[status] if status < len(THERMAL_STATUS) else str(status)
    return {"status": status, "status_name": name, "temperatures_c": temperatures}


def android_thermal():
    """This Android device's thermal status (``parse_thermalservice``), or None elsewhere."""
    return parse_thermalservice(_run(["dumpsys", "thermalservice"]) or "")


def conditions():
    """What can change a measurement: clocks, temperatures, throttling (before/after a batch)."""
    arm_clock = _run(["vcgencmd", "measure_clock", "arm"])
    return {
        "time": time.time(),
        "cpu_mhz": cpu_frequencies(),
        "temperatures_c": temperatures(),
        "throttle": throttle_state(),
        "arm_clock_hz": int(arm_clock.split("=", 1)[1]) if arm_clock and "=" in arm_clock else None,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "android_thermal": android_thermal(),
        "jetson": jetson_clocks_now() if l4t_release() else None,
    }


# --- NVIDIA Jetson: release, power mode, clocks, INA3221 power rails --------------------------
# Read as jetson_stats reads them, without root where the board allows: the GPU is the devfreq
# device whose device-tree node is named like a GPU; jetson_clocks is on when every clock it
# pins has its minimum raised to its maximum; the EMC clock is in debugfs (root only) or in a
# tegrastats line.
_GPU_NODES = ("gpu", "gv11b", "gp10b", "ga10b", "gb10b")
_EMC_RATE_FILES = ("/kernel/debug/bpmp/debug/clk/emc/rate", "/kernel/debug/clk/emc/clk_rate")
#: Rails that carry the whole module's input power (Orin Nano/NX, Nano); elsewhere (AGX Orin)
#: the total is the sum of the rails.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")


def l4t_release():
    """The L4T release from /etc/nv_tegra_release ("36.4.0" from "# R36 (release), REVISION:
    4.0, ..."), or None off Jetsons."""
    match = re.match(r"# R(\d+) \(release\), REVISION: ([\d.]+)", _read(ETC + "/nv_tegra_release", "") or "")
    return "{}.{}".format(*match.groups()) if match else None


def nvpmodel_mode():
    """The power mode ``nvpmodel -q`` names ("NV Power Mode: NAME", then the ID) and the
    sha256 of /etc/nvpmodel.conf: IDs, names and a mode's clocks differ by board and JetPack."""
    lines = (_run(["nvpmodel", "-q"]) or "").splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith("NV Power Mode:")), None)
    if at is None:
        return None
    following = lines[at + 1].strip() if at + 1 < len(lines) else ""
    conf = _read(ETC + "/nvpmodel.conf")
    return {
        "name": lines[at].split(":", 1)[1].strip(),
        "id": int(following) if following.isdigit() else None,
        "conf_sha256": hashlib.sha256(conf.encode()).hexdigest()[:16] if conf is not None else None,
    }


def _gpu_devfreq():
    """The integrated GPU's devfreq folder, or None."""
    for folder in sorted(glob.glob(SYSFS + "/class/devfreq/*")):
        node = (_read(folder + "/device/of_node/name") or "").strip("\x00")
        if node in _GPU_NODES or "gpu" in node:
            return folder
    return None


def _int_file(path):
    """A sysfs file's integer (Hz, mV, mA, mW), or None."""
    value = _read(path)
    return int(value) if value and value.isdigit() else None


def _tegrastats_line():
    """One line of ``tegrastats --interval 100`` (it prints until stopped), or None."""
    if shutil.which("tegrastats") is None:
        return None
    proc = subprocess.Popen(["tegrastats", "--interval", "100"], stdout=subprocess.PIPE, text=True)
    timer = threading.Timer(5.0, proc.kill)
    timer.start()
    try:
        return proc.stdout.readline().strip() or None
    finally:
        timer.cancel()
        proc.kill()
        proc.wait()


def jetson_clocks_now():
    """The GPU's clock and range (MHz), its devfreq governor and the EMC clock (MHz): what a
    bench records before and after."""
    gpu = _gpu_devfreq()
    mhz = {k: _int_file(gpu + "/" + k + "_freq") if gpu else None for k in ("cur", "min", "max")}
    emc = next(filter(None, (_int_file(SYSFS + f) for f in _EMC_RATE_FILES)), None)
    if emc is None:
        match = re.search(r"\bEMC_FREQ \d+%@(\d+)", _tegrastats_line() or "")
        emc = int(match.group(1)) * 1000000 if match else None
    return {
        **{f"gpu_{k}_mhz".replace("_cur", ""): round(hz / 1e6) if hz else None for k, hz in mhz.items()},
        "gpu_governor": _read(gpu + "/governor") if gpu else None,
        "emc_mhz": round(emc / 1e6) if emc else None,
    }


def jetson_clocks_on():
    """Whether jetson_clocks pinned the clocks: every online CPU's and the GPU's minimum is
    its maximum (None when neither can be read)."""
    pairs = [
        (_read(cpu + "/scaling_min_freq"), _read(cpu + "/scaling_max_freq"))
        for cpu in glob.glob(SYSFS + "/devices/system/cpu/cpu[0-9]*/cpufreq")
    ]
    gpu = _gpu_devfreq()
    if gpu:
        pairs.append((_read(gpu + "/min_freq"), _read(gpu + "/max_freq")))
    pairs = [p for p in pairs if None not in p]
    return all(lo == hi for lo, hi in pairs) if pairs else None


def jetson_identity():
    """What a Jetson's tables are valid for: L4T release, power mode, jetson_clocks, and the
    power rails it has (None off Jetsons)."""
    release = l4t_release()
    if release is None:
        return None
    return {
        "l4t": release,
        "nvpmodel": nvpmodel_mode(),
        "jetson_clocks": jetson_clocks_on(),
        "power_rails": sorted(power_rails()),
    }


def power_rails():
    """The INA3221 rails as {label: files}, found as jetson_stats finds them: an I2C device named
    ina3221* with a hwmon*/ folder (JetPack 5+: ``in<N>_label``, bus mV in ``in<N>_input``, mA
    in ``curr<N>_input``) or an iio:device*/ folder (JetPack 4: ``rail_name_<k>``, mW in
    ``in_power<k>_input``). Channel 7 (the sum of shunt voltages) and NC channels are skipped."""
    rails = {}
    for device in sorted(glob.glob(SYSFS + "/bus/i2c/devices/*")):
        if not (_read(device + "/name") or "").startswith("ina3221"):
            continue
        for label_file in sorted(glob.glob(device + "/hwmon/hwmon*/in*_label")):
            channel, label = os.path.basename(label_file)[2 : -len("_label")], _read(label_file)
            folder = os.path.dirname(label_file)
            if channel != "7" and label and label != "NC":
                rails[label] = (f"{folder}/in{channel}_input", f"{folder}/curr{channel}_input")
        for name_file in sorted(glob.glob(device + "/iio:device*/rail_name_*")):
            channel = name_file.rsplit("_", 1)[1]
            rails[_read(name_file)] = (f"{os.path.dirname(name_file)}/in_power{channel}_input",)
    return rails


def _rail_mw(files):
    """A rail's power now (mW): the iio layout's own mW, or bus mV x mA / 1000 (None if unread)."""
    values = [_int_file(f) for f in files]
    if None in values:
        return None
    return float(values[0]) if len(values) == 1 else values[0] * values[1] / 1000.0


class PowerSampler:
    """Reads the power rails during a timed phase (``begin`` .. ``end``): once at its start (the
    warm-up has just loaded the device; so even a phase shorter than ``interval`` has a
    reading), then every ``interval`` seconds in a thread."""

    def __init__(self, rails, interval=0.005):
        self.rails, self.interval = rails, interval
        self.active = False
        self.sums = dict.fromkeys(rails, 0.0)
        self.count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def begin(self):
        self._reading()
        self.active = True

    def end(self):
        self.active = False

    def __enter__(self):
        if self.rails:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _sample(self):
        while not self._stop.wait(self.interval):
            if self.active:
                self._reading()

    def _reading(self):
        readings = {label: _rail_mw(files) for label, files in self.rails.items()}
        if self.rails and None not in readings.values():
            with self._lock:
                for label, mw in readings.items():
                    self.sums[label] += mw
                self.count += 1

    def energy(self, busy_ms, runs):
        """Millijoules per inference over ``runs`` inferences that kept the device busy for
        ``busy_ms``: the mean power of the phase times the busy time, of the input rail where
        the board has one, else of the rails' sum; with each rail's mean power. Empty without
        rails; energy_mj None when no rail could be read."""
        if not self.rails:
            return {}
        if not self.count or not runs:
            return {"energy_mj": None, "power_samples": self.count}
        mean = {label: total / self.count for label, total in self.sums.items()}
        total_rail = next((r for r in INPUT_RAILS if r in mean), None)
        total_mw = mean[total_rail] if total_rail else sum(mean.values())
        return {
            "energy_mj": total_mw * busy_ms / runs / 1000.0,
            "power_mw": {label: round(mw, 3) for label, mw in mean.items()},
            "power_input": total_rail or "sum of rails",
            "power_input_mw": total_mw,
            "power_samples": self.count,
        }


# --- CPU, board and SoC identification ---------------------------------------------------------
# ARM cores by the "CPU implementer" and "CPU part" numbers of /proc/cpuinfo (the MIDR register's
# fields). The numbers follow Linux's arch/arm64/include/asm/cputype.h and util-linux's
# sys-utils/lscpu-arm.c; Arm's own cores are named as lscpu names them, other vendors' cores get
# the vendor in front. Qualcomm's Kryo 5xx/6xx cores report Arm's numbers (Cortex-A77/A78/X1/A55),
# its 5xx Silver cores the 4xx Silver number. The host imports identify() and parse_getprop() for
# phones measured without Python (ofa_edge/devices/android.py): one decoding for every device.
ARM_IMPLEMENTERS = {
    0x41: "Arm",
    0x42: "Broadcom",
    0x43: "Cavium",
    0x46: "Fujitsu",
    0x48: "HiSilicon",
    0x4E: "NVIDIA",
    0x50: "APM",
    0x51: "Qualcomm",
    0x53: "Samsung",
    0x56: "Marvell",
    0x61: "Apple",
    0x6D: "Microsoft",
    0xC0: "Ampere",
}
ARM_PARTS = {
    0x41: {
        0xB76: "ARM1176",
        0xC07: "Cortex-A7",
        0xC09: "Cortex-A9",
        0xC0E: "Cortex-A17",
        0xC0F: "Cortex-A15",
        0xD03: "Cortex-A53",
        0xD04: "Cortex-A35",
        0xD05: "Cortex-A55",
        0xD06: "Cortex-A65",
        0xD07: "Cortex-A57",
        0xD08: "Cortex-A72",
        0xD09: "Cortex-A73",
        0xD0A: "Cortex-A75",
        0xD0B: "Cortex-A76",
        0xD0C: "Neoverse-N1",
        0xD0D: "Cortex-A77",
        0xD0E: "Cortex-A76AE",
        0xD40: "Neoverse-V1",
        0xD41: "Cortex-A78",
        0xD42: "Cortex-A78AE",
        0xD44: "Cortex-X1",
        0xD46: "Cortex-A510",
        0xD47: "Cortex-A710",
        0xD48: "Cortex-X2",
        0xD49: "Neoverse-N2",
        0xD4B: "Cortex-A78C",
        0xD4C: "Cortex-X1C",
        0xD4D: "Cortex-A715",
        0xD4E: "Cortex-X3",
        0xD4F: "Neoverse-V2",
        0xD80: "Cortex-A520",
        0xD81: "Cortex-A720",
        0xD82: "Cortex-X4",
        0xD84: "Neoverse-V3",
        0xD85: "Cortex-X925",
        0xD87: "Cortex-A725",
        0xD8E: "Neoverse-N3",
    },
    0x4E: {0x000: "Denver", 0x003: "Denver 2", 0x004: "Carmel"},
    0x51: {
        0x001: "Oryon",
        0x201: "Kryo",
        0x205: "Kryo",
        0x211: "Kryo",
        0x800: "Kryo 2xx Gold",
        0x801: "Kryo 2xx Silver",
        0x802: "Kryo 3xx Gold",
        0x803: "Kryo 3xx Silver",
        0x804: "Kryo 4xx Gold",
        0x805: "Kryo 4xx/5xx Silver",
        0xC00: "Falkor",
        0xC01: "Saphira",
    },
    0x53: {0x001: "Exynos M1", 0x002: "Exynos M3", 0x003: "Exynos M4", 0x004: "Exynos M5"},
    0x61: {
        0x022: "M1 Icestorm",
        0x023: "M1 Firestorm",
        0x024: "M1 Pro Icestorm",
        0x025: "M1 Pro Firestorm",
        0x028: "M1 Max Icestorm",
        0x029: "M1 Max Firestorm",
        0x032: "M2 Blizzard",
        0x033: "M2 Avalanche",
        0x034: "M2 Pro Blizzard",
        0x035: "M2 Pro Avalanche",
        0x038: "M2 Max Blizzard",
        0x039: "M2 Max Avalanche",
    },
}
#: cpuinfo fields naming the CPU where no implementer/part numbers are printed (x86, old kernels).
#: Not "Hardware": it names the SoC, and Raspberry Pi kernels print BCM2835 on every model.
_MODEL_FIELDS = ("model name", "Processor", "cpu model")


def _parse_cpuinfo(text):
    """/proc/cpuinfo as (one dict per processor, a dict of the fields outside the processor
    blocks: Raspberry Pi's Hardware/Revision/Model lines, old kernels' one set of CPU IDs)."""
    cpus, general, current = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            current = None
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep:
            continue
        if key == "processor" and value.isdigit():
            current = {}
            cpus.append(current)
        else:
            (general if current is None else current)[key] = value
    return cpus, general


def _part_name(implementer, part):
    vendor = ARM_IMPLEMENTERS.get(implementer, f"implementer 0x{implementer:02x}")
    name = ARM_PARTS.get(implementer, {}).get(part)
    if name is None:
        return f"{vendor} part 0x{part:03x}"
    return name if implementer == 0x41 else vendor + " " + name


def _cpu_parts(cpus):
    """Each kind of core in order of first appearance (so cpu numbers map onto clusters): its
    name, IDs, rXpY stepping and core count (None when the kernel prints the IDs only once)."""
    found = {}
    for cpu in cpus:
        try:
            key = int(cpu["CPU implementer"], 16), int(cpu["CPU part"], 16)
        except (KeyError, ValueError):
            continue
        if key not in found:
            variant, revision = cpu.get("CPU variant", ""), cpu.get("CPU revision", "")
            found[key] = {
                "name": _part_name(*key),
                "implementer": f"0x{key[0]:02x}",
                "part": f"0x{key[1]:03x}",
                "stepping": f"r{int(variant, 16)}p{revision}"
                if variant.startswith("0x") and revision.isdigit()
                else None,
                "count": 0,
            }
        found[key]["count"] += 1
    parts = list(found.values())
    if sum(p["count"] for p in parts) < len(cpus):
        for p in parts:
            p["count"] = None
    return parts


def parse_getprop(text):
    """Android's ``getprop`` listing (``[key]: [value]`` lines) as a dict."""
    props = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("]: [")
        if sep and key.startswith("[") and value.endswith("]"):
            props[key[1:]] = value[:-1]
    return props


def _joined(props, *keys):
    return " ".join(props[k] for k in keys if props.get(k))


def identify(cpuinfo, device_tree=None, android=None):
    """The device's CPU, board and SoC from its /proc/cpuinfo text, its device-tree ``model`` and
    ``compatible`` strings and its Android properties: the fingerprint's cpu_model (the decoded
    cores, "4x Cortex-A55 + 3x Cortex-A78 + 1x Cortex-X1" for big.LITTLE), core_types, board, soc
    (Android's; on other boards ``compatible`` names it, in no fixed place) and compatible. What
    it cannot tell is None."""
    device_tree, android = device_tree or {}, android or {}
    cpus, general = _parse_cpuinfo(cpuinfo)
    # Old kernels print the IDs once, for the boot CPU: a name without counts
    parts = _cpu_parts(cpus) or [dict(p, count=None) for p in _cpu_parts([general])]
    if len(parts) > 1 and parts[0]["count"] is not None:
        model = " + ".join(f"{p['count']}x {p['name']}" for p in parts)
    elif parts:
        model = " + ".join(p["name"] for p in parts)
    else:
        model = next((f[k] for k in _MODEL_FIELDS for f in [*cpus[:1], general] if f.get(k)), None)
    product = _joined(android, "ro.product.manufacturer", "ro.product.model")
    soc = _joined(android, "ro.soc.manufacturer", "ro.soc.model")
    return {
        "cpu_model": model,
        "core_types": parts,
        "board": product or next(iter(device_tree.get("model") or []), None) or general.get("Model"),
        "soc": soc or android.get("ro.board.platform") or android.get("ro.hardware"),
        "compatible": device_tree.get("compatible") or [],
    }


def _device_tree(name):
    """A device-tree property's strings (NUL-separated), or [] where there is no device tree."""
    for folder in (PROCFS + "/device-tree", SYSFS + "/firmware/devicetree/base"):
        raw = _read(folder + "/" + name)
        if raw is not None:
            return [s for s in raw.split("\x00") if s]
    return []


def _runtimes():
    found = {}
    try:
        import onnxruntime

        found["onnxruntime"] = {
            "version": onnxruntime.__version__,
            "providers": onnxruntime.get_available_providers(),
        }
    except Exception as err:
        found["onnxruntime"] = {"error": f"{type(err).__name__}: {err}"}
    for module in ("ai_edge_litert", "tflite_runtime"):
        try:
            mod = __import__(module + ".interpreter", fromlist=["Interpreter"])
            version = getattr(sys.modules.get(module), "__version__", None)
            found[module] = {
                "version": version,
                "delegates": ["XNNPACK (default CPU)"],
                "module": mod.__name__,
            }
        except Exception as err:
            found[module] = {"error": f"{type(err).__name__}: {err}"}
    binary = trtexec_binary()
    found["trtexec"] = (
        {"version": trtexec_version(binary), "path": binary} if binary else {"error": "not found"}
    )
    return found


def fingerprint():
    """Everything that identifies the device and the conditions its tables are valid for."""
    try:
        import numpy

        numpy_version = numpy.__version__
    except ImportError:
        numpy_version = None
    governors = sorted(
        {_read(p) for p in glob.glob(SYSFS + "/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")}
        - {None}
    )
    meminfo = _read(PROCFS + "/meminfo", "") or ""
    device = identify(
        _read(PROCFS + "/cpuinfo", "") or "",
        {"model": _device_tree("model"), "compatible": _device_tree("compatible")},
        parse_getprop(_run(["getprop"]) or ""),  # Android (an agent under Termux)
    )
    mem_kb = next(
        (int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), None
    )
    return {
        "hostname": platform.node(),
        "os": platform.platform(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "cpu_model": device["cpu_model"] or platform.processor() or platform.machine(),
        "core_types": device["core_types"],
        "board": device["board"],
        "soc": device["soc"],
        "compatible": device["compatible"],
        "cores": os.cpu_count(),
        "online_cpus": _read(SYSFS + "/devices/system/cpu/online"),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "governors": governors,
        "memory_mb": mem_kb // 1024 if mem_kb else None,
        "jetson": jetson_identity(),
        "python": platform.python_version(),
        "numpy": numpy_version,
        "runtimes": _runtimes(),
        "agent_version": AGENT_VERSION,
        "agent_dir": os.getcwd(),
        "conditions": conditions(),
    }


# --- measuring, in a child process ------------------------------------------------------------


def _percentile(sorted_values, q):
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _dim(d):
    """A concrete size for a model input dimension (symbolic or unknown -> 1)."""
    try:
        d = int(d)
    except (TypeError, ValueError):
        return 1
    return d if d > 0 else 1


def _make_runner(path, runtime, threads, backend=None):
    """A zero-argument callable running one inference on a fixed random input, and where the
    model's nodes ran (None on a CPU backend, which is not checked)."""
    import numpy as np

    rng = np.random.default_rng(0)
    backend = backend or {}

    def sample(shape, dtype):
        shape = [_dim(d) for d in shape]
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            return rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape).astype(dtype)
        return rng.standard_normal(shape).astype(dtype)

    if runtime == "onnxruntime":
        target = backend.get("target")
        session = _onnx_session(path, threads, backend.get("providers"), profile=target is not None)
        type_map = {
            "tensor(float)": np.float32,
            "tensor(uint8)": np.uint8,
            "tensor(int8)": np.int8,
            "tensor(int64)": np.int64,
        }
        feeds = {i.name: sample(i.shape, type_map.get(i.type, np.float32)) for i in session.get_inputs()}
        placement = _onnx_placement(session, feeds, target) if target else None
        return (lambda: session.run(None, feeds)), placement
    if runtime == "tflite":
        interp = _tflite_interpreter(path, threads, backend)
        for detail in interp.get_input_details():
            interp.set_tensor(detail["index"], sample(detail["shape"], detail["dtype"]))
        target = backend.get("target")
        return interp.invoke, _tflite_placement(interp, target) if target else None
    raise ValueError(f"unknown runtime {runtime!r}")


def _onnx_session(path, threads, providers=None, profile=False):
    """An onnxruntime session on ``threads`` threads, running nodes in sequence, on
    ``providers`` (``[name, options]`` pairs, default the CPU); ``profile`` records the first run
    (``_onnx_placement`` reads and ends it)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if profile:
        import tempfile

        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tempfile.gettempdir(), f"ofa-edge-placement-{os.getpid()}")
    providers = [tuple(p) for p in providers] if providers else ["CPUExecutionProvider"]
    return ort.InferenceSession(path, opts, providers=providers)


def _onnx_placement(session, feeds, target):
    """Where onnxruntime ran each node of one profiled run (its profile's per-node
    ``provider``), then profiling ended: the nodes per provider, and whether all ran on
    ``target``. A provider onnxruntime dropped (not installed, failed to load) runs none."""
    session.run(None, feeds)
    profile = session.end_profiling()
    try:
        with open(profile) as f:
            events = json.load(f)
    finally:
        os.remove(profile)
    where = {}
    for event in events:
        provider = (event.get("args") or {}).get("provider")
        if event.get("cat") == "Node" and provider and event["name"].endswith("_kernel_time"):
            where[event["name"]] = provider
    counts = {}
    for provider in where.values():
        counts[provider] = counts.get(provider, 0) + 1
    on_target = counts.get(target, 0)
    return {
        "target": target,
        "whole": bool(where) and on_target == len(where),
        "nodes": len(where),
        "on_target": on_target,
        "partitions": None,
        "by_provider": counts,
    }


def _tflite_interpreter(path, threads, backend=None):
    """A LiteRT interpreter (``ai_edge_litert``, else ``tflite_runtime``), tensors allocated, on
    the backend's delegate: ``xnnpack`` (the default), ``none`` (builtin kernels only), or a
    delegate library loaded by ``load_delegate`` (``gpu``, ``nnapi``) whose leftover nodes run
    on the builtin kernels, not XNNPACK, so that every DELEGATE node is the requested one's."""
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:
        from tflite_runtime import interpreter as litert
    backend = backend or {}
    delegate = backend.get("delegate") or "xnnpack"
    kwargs = {}
    if delegate != "xnnpack":
        kwargs["experimental_op_resolver_type"] = litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if delegate in ("gpu", "nnapi"):
        kwargs["experimental_delegates"] = [_load_delegate(litert, delegate, backend)]
    interp = litert.Interpreter(model_path=path, num_threads=threads, **kwargs)
    interp.allocate_tensors()
    return interp


class DelegateUnavailable(Exception):
    """A delegate library that cannot be loaded, or a setting it cannot take."""


def _load_delegate(litert, delegate, backend):
    """The ``gpu`` or ``nnapi`` delegate from its library (``backend["library"]``)."""
    library = backend.get("library")
    if not library:
        raise DelegateUnavailable(f"the {delegate} delegate needs its library: set backend library")
    if delegate == "nnapi" and backend.get("precision") == "fp16":
        raise DelegateUnavailable("fp16 for an nnapi delegate library: set its own option in backend options")
    try:
        return litert.load_delegate(library, backend.get("options") or {})
    except (OSError, ValueError, RuntimeError) as err:
        detail = " ".join(str(err).split())
        raise DelegateUnavailable(f"cannot load the {delegate} delegate {library}: {detail}") from None


def _tflite_placement(interp, target):
    """Where TFLite runs the model: its DELEGATE nodes (each a partition the delegate took) and
    the original nodes each one replaced, found by walking back from the partition's outputs to
    its inputs; all nodes delegated means the whole model runs on ``target``."""
    ops = interp._get_ops_details()
    producer = {}
    for op in ops:
        if op["op_name"] != "DELEGATE":
            for tensor in op["outputs"]:
                producer[int(tensor)] = op["index"]
    by_index = {op["index"]: op for op in ops}
    delegated = set()
    partitions = [op for op in ops if op["op_name"] == "DELEGATE"]
    for part in partitions:
        inputs = {int(t) for t in part["inputs"]}
        todo = [int(t) for t in part["outputs"]]
        while todo:
            node = producer.get(todo.pop())
            if node is None or node in delegated:
                continue
            delegated.add(node)
            todo += [int(t) for t in by_index[node]["inputs"] if int(t) not in inputs]
    nodes = len(ops) - len(partitions)
    return {
        "target": target,
        "whole": nodes > 0 and len(delegated) == nodes,
        "nodes": nodes,
        "on_target": len(delegated),
        "partitions": len(partitions),
        "by_provider": {},
    }


def predict(path, runtime, x, threads=1):
    """A model's outputs on a float batch ``x`` in the model's own layout, one sample per run (the
    exported models take batch 1); an integer model's input is quantized and its output
    dequantized with the model's own scales. Host and device compute outputs with this one
    function, so that their comparison compares runtimes and CPUs only."""
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    if runtime == "onnxruntime":
        session = _onnx_session(path, threads)
        name = session.get_inputs()[0].name
        return np.concatenate([session.run(None, {name: sample[None]})[0] for sample in x])
    interp = _tflite_interpreter(path, threads)
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    results = []
    for sample in x:
        feed = sample[None]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            feed = np.clip(np.round(feed / scale + zero), info.min, info.max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], feed)
        interp.invoke()
        y = interp.get_tensor(outp["index"])
        if outp["dtype"] != np.float32:
            scale, zero = outp["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        results.append(y)
    return np.concatenate(results)


def predict_files(req):
    """The ``predict`` request: outputs of ``model`` on the .npy batch ``inputs``, written as .npy
    beside it (the host fetches the file: logits of hundreds of images are too big for a line)."""
    import numpy as np

    missing = missing_runtime(req["runtime"])
    if missing:
        raise RuntimeMissing(missing)
    started = time.perf_counter()
    y = predict(req["model"], req["runtime"], np.load(req["inputs"]), int(req.get("threads", 1)))
    out = req["inputs"][: -len(".npy")] + ".out.npy"
    np.save(out, y)
    return {"outputs": out, "shape": list(y.shape), "seconds": time.perf_counter() - started}


class PlacementRefused(Exception):
    """A model not wholly on the backend's accelerator, and the backend does not allow_partial."""


def placed(name, made, spec):
    """The runner of ``made`` (``_make_runner``'s pair), refused (the model's name and placement
    as JSON, which the host reports) when the model is not wholly on the accelerator and the
    backend does not allow partial placement."""
    run, placement = made
    if placement and not placement["whole"] and not (spec.get("backend") or {}).get("allow_partial"):
        raise PlacementRefused(json.dumps({"model": name, "placement": placement}))
    return run, placement


def measure_one(path, spec, reference=None, name="model", sampler=None):
    """Per-run latencies (ms) after warm-up, until both min_runs and min_seconds are met; with a
    ``reference`` runner, interleaved with it (``measure_interleaved``) and its ratio reported;
    with a ``PowerSampler``, its energy per inference: the device's power during the timed
    phase (interleaved: the reference's bursts too, a load of the same kind) times the runs' time."""
    sampler = sampler or PowerSampler({})
    start = time.perf_counter()
    made = _make_runner(path, spec["runtime"], spec["threads"], spec.get("backend"))
    run, placement = placed(name, made, spec)
    load_ms = (time.perf_counter() - start) * 1e3
    for _ in range(spec["warmup"]):
        run()

    relative = {}
    sampler.begin()
    if reference is not None:
        samples, relative = measure_interleaved(run, reference, spec)
    else:
        samples = _until_enough(spec, lambda: _burst(run, 1, 0))
    sampler.end()
    ordered = sorted(samples)
    return {
        **relative,
        **sampler.energy(sum(samples), len(samples)),
        "samples_ms": [round(s, 5) for s in samples],
        "median_ms": _percentile(ordered, 0.5),
        "p10_ms": _percentile(ordered, 0.1),
        "p90_ms": _percentile(ordered, 0.9),
        "mean_ms": sum(samples) / len(samples),
        "runs": len(samples),
        "load_ms": load_ms,
        "placement": placement,
    }


# --- TensorRT's trtexec: engines built and cached on the device --------------------------------
#: JetPack installs trtexec here, off PATH.
TRTEXEC_JETPACK = "/usr/src/tensorrt/bin/trtexec"
_TRT_PRECISION_FLAGS = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8"]}
_TRT_STATS = {"Latency": "end_to_end_ms", "GPU Compute Time": "gpu_compute_ms"}


def trtexec_binary():
    """trtexec on PATH, else JetPack's, else None."""
    found = shutil.which("trtexec")
    return found or (TRTEXEC_JETPACK if os.access(TRTEXEC_JETPACK, os.X_OK) else None)


def trtexec_version(binary):
    """TensorRT's version from trtexec's banner: "[TensorRT v8602]" is 8.6.2 and
    "[TensorRT v100300]" 10.3.0 (two digits each for minor and patch from TensorRT 10)."""
    try:
        out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"\[TensorRT v(\d+)\]", out)
    if not match:
        return None
    n = int(match.group(1))
    return "{}.{}.{}".format(
        *((n // 10000, n // 100 % 100, n % 100) if n >= 100000 else (n // 1000, n // 100 % 10, n % 100))
    )


def parse_trtexec(text):
    """trtexec's performance summary: the end-to-end ``Latency`` line (with the host-device
    copies) and the model-only ``GPU Compute Time`` line as {min, max, mean, median, p90, p95,
    p99} in ms (percentiles only those printed: TensorRT 8.2 prints p99 alone), the number of
    timed queries, the host wall time (s) and the engine build time (s), where printed."""
    found = {}
    for head, stats in re.findall(r"\[I\] (Latency|GPU Compute Time): (min = .*)", text):
        found[_TRT_STATS[head]] = {
            re.sub(r"percentile\((\d+)%\)", r"p\1", key): float(value)
            for key, value in re.findall(r"([\w()%]+) = ([-\d.e+]+) ms", stats)
        }
    for key, pattern in (
        ("queries", r"Timing trace has (\d+) queries"),
        ("walltime_s", r"Total Host Walltime: ([\d.e+-]+) s"),
        ("build_s", r"Engine built in ([\d.e+-]+) sec"),
    ):
        match = re.search(pattern, text)
        found[key] = float(match.group(1)) if match else None
    return found


def _trtexec_run(argv, sampler, timeout):
    """trtexec's output; the sampler reads from its "Starting inference" line to the next line
    (the warm-up and the timed queries)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Starting inference" in line:
                sampler.begin()
            elif sampler.active:
                sampler.end()
        proc.wait()
    finally:
        timer.cancel()
        sampler.end()
    if proc.returncode:
        tail = " | ".join(s.strip() for s in lines[-3:])
        raise RuntimeError(f"{os.path.basename(argv[0])} exited with {proc.returncode}: {tail}")
    return "".join(lines)


def trtexec_engine(path, precision, binary, version):
    """The model's TensorRT engine, built here on the device on first use and cached in
    ``engines/`` beside the agent by the model's sha256, TensorRT version and precision; and
    the build's seconds (None when cached). TensorRT before 8.6 builds with --buildOnly."""
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    engine = os.path.join(os.getcwd(), "engines", f"{digest[:16]}-trt{version}-{precision}.engine")
    if os.path.isfile(engine):
        return engine, None
    os.makedirs(os.path.dirname(engine), exist_ok=True)
    partial = f"{engine}.{os.getpid()}.partial"
    major_minor = tuple(int(v) for v in version.split(".")[:2])
    build_only = "--skipInference" if major_minor >= (8, 6) else "--buildOnly"
    started = time.perf_counter()
    argv = [binary, f"--onnx={path}", f"--saveEngine={partial}", *_TRT_PRECISION_FLAGS[precision], build_only]
    out = _trtexec_run(argv, PowerSampler({}), timeout=3600)
    os.replace(partial, engine)
    return engine, parse_trtexec(out)["build_s"] or time.perf_counter() - started


def measure_trtexec(path, spec, sampler):
    """An ONNX model through trtexec: its engine (built or cached), then at least min_runs
    queries over at least min_seconds. median_ms is the model-only GPU compute median (what a
    table adds up); the end-to-end latency with copies is reported beside it."""
    binary = trtexec_binary()
    version = trtexec_version(binary)
    if version is None:
        raise RuntimeError(f"{binary} printed no [TensorRT vNNNN] banner")
    engine, build_s = trtexec_engine(path, spec["precision"], binary, version)
    argv = [binary, f"--loadEngine={engine}", f"--iterations={spec['min_runs']}",
            f"--duration={max(1, math.ceil(spec['min_seconds']))}"]  # fmt: skip
    summary = parse_trtexec(_trtexec_run(argv, sampler, timeout=3600))
    gpu = summary.get("gpu_compute_ms")
    if gpu is None or not summary["queries"]:
        raise RuntimeError("trtexec printed no performance summary (GPU Compute Time, Timing trace)")
    runs = int(summary["queries"])
    return {
        **sampler.energy((summary["walltime_s"] or 0.0) * 1e3, runs),
        "median_ms": gpu["median"],
        "mean_ms": gpu["mean"],
        "p10_ms": None,
        "p90_ms": gpu.get("p90"),
        "runs": runs,
        "gpu_compute_ms": gpu,
        "end_to_end_ms": summary.get("end_to_end_ms"),
        "engine": {"file": os.path.basename(engine), "tensorrt": version, "precision": spec["precision"],
                   "cached": build_s is None, "build_s": build_s},
    }  # fmt: skip


def _burst(run, n, warm):
    """``warm`` untimed runs (the other model just evicted this one's caches), then ``n`` timed."""
    for _ in range(warm):
        run()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _until_enough(spec, step):
    """Samples from repeated ``step()`` calls until both min_runs samples and min_seconds are
    reached (or max_runs)."""
    samples = []
    parent = os.getppid()
    began = time.perf_counter()
    while len(samples) < spec["max_runs"] and (
        len(samples) < spec["min_runs"] or time.perf_counter() - began < spec["min_seconds"]
    ):
        samples += step()
        if os.getppid() != parent:  # the agent died: never go on measuring as an orphan
            sys.exit(1)
    return samples


def measure_interleaved(run, reference, spec):
    """The model in short bursts alternating with bursts of ``reference``: each burst's median
    over the geometric mean of the reference bursts around it is the model's speed relative to
    the device's speed of that moment, so changes of speed slower than a burst (milliseconds)
    cancel. Runs until both min_runs model runs and min_seconds (model and reference) are met."""
    n, warm = spec["burst"], spec["burst_warmup"]
    refs = [_median(_burst(reference, n, warm))]
    ratios = []

    def step():
        times = _burst(run, n, warm)
        refs.append(_median(_burst(reference, n, warm)))
        ratios.append(_median(times) / math.sqrt(refs[-2] * refs[-1]))
        return times

    samples = _until_enough(spec, step)
    return samples, {"ratio": _median(ratios), "ref_median_ms": _median(refs), "bursts": len(ratios)}


def _median(values):
    return _percentile(sorted(values), 0.5)


def child_main(spec_json):
    """Child process: measure each model of the batch, one JSON line per model on stdout."""
    spec = json.loads(spec_json)
    if spec.get("cpus") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, spec["cpus"])
    reference = None
    rails = power_rails()
    for model in spec["models"]:
        print(json.dumps({"name": model["name"], "started": True}), flush=True)
        try:
            with PowerSampler(rails) as sampler:
                if spec["runtime"] == "trtexec":
                    result = measure_trtexec(model["path"], spec, sampler)
                else:
                    if spec.get("reference") and reference is None:
                        made = _make_runner(
                            spec["reference"], spec["runtime"], spec["threads"], spec.get("backend")
                        )
                        reference = placed("the reference model", made, spec)[0]
                    result = measure_one(model["path"], spec, reference, model["name"], sampler)
            result["name"] = model["name"]
        except PlacementRefused as err:
            result = {"name": model["name"], "error": str(err), "refused": True}
        except Exception as err:
            result = {"name": model["name"], "error": f"{type(err).__name__}: {err}"}
        print(json.dumps(result), flush=True)


class _Child:
    """The measuring child and a reader thread turning its stdout into a queue of lines."""

    def __init__(self, spec):
        import queue

        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "measure", json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append), daemon=True).start()

    @staticmethod
    def _pump(stream, sink):
        for line in stream:
            sink(line.rstrip("\n"))
        sink(None)

    def next_line(self, timeout):
        import queue

        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return "TIMEOUT"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def why_dead(self):
        self.proc.wait(timeout=10)
        tail = [s for s in self.stderr if s][-3:]
        return "crashed (exit {}){}".format(self.proc.returncode, ": " + " | ".join(tail) if tail else "")


class RuntimeMissing(Exception):
    """The runtime a bench asks for, or numpy, is not installed for the agent's Python."""


def _installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_runtime(runtime):
    """One line naming the pip command that installs what ``runtime`` lacks here, or None. It
    names every package the agent uses that is absent, so a device with neither runtime gets
    both; for TFLite on Python 3.8 (JetPack 5) tflite-runtime, which has aarch64 wheels for it
    where ai-edge-litert has none."""
    if runtime == "trtexec":
        return (
            None
            if trtexec_binary()
            else (
                f"trtexec is neither on PATH nor at {TRTEXEC_JETPACK} on this {platform.machine()} device: "
                "install TensorRT (JetPack's nvidia-tensorrt) or choose another runtime"
            )
        )
    tflite = "ai-edge-litert" if sys.version_info >= (3, 9) else "tflite-runtime"
    absent = {
        "numpy": not _installed("numpy"),
        "onnxruntime": not _installed("onnxruntime"),
        tflite: not (_installed("ai_edge_litert") or _installed("tflite_runtime")),
    }
    needed = {"onnxruntime": "onnxruntime", "tflite": tflite}.get(runtime)
    if needed is None or not (absent["numpy"] or absent[needed]):
        return None
    packages = " ".join(p for p, missing in absent.items() if missing)
    return (
        f"{runtime} cannot run on this {platform.machine()} device: {packages} not installed for "
        f"Python {platform.python_version()}; run `{sys.executable} -m pip install {packages}`"
    )


def bench(req, emit):
    """Measure every model of the request; models that crash or hang are reported and skipped."""
    spec = {
        "runtime": req.get("runtime", "onnxruntime"),
        "threads": int(req.get("threads", 1)),
        "warmup": int(req.get("warmup", 5)),
        "min_runs": int(req.get("min_runs", 20)),
        "min_seconds": float(req.get("min_seconds", 0.5)),
        "max_runs": int(req.get("max_runs", 10000)),
        "cpus": req.get("cpus"),
        "reference": req.get("reference"),
        "burst": int(req.get("burst", 10)),
        "burst_warmup": int(req.get("burst_warmup", 2)),
        "backend": req.get("backend"),
        "precision": req.get("precision", "fp32"),
    }
    if spec["runtime"] == "trtexec" and (spec["reference"] or spec["precision"] not in _TRT_PRECISION_FLAGS):
        raise ValueError(
            f"trtexec runs precision fp32, fp16 or int8 (not {spec['precision']!r}), "
            "and no interleaved reference"
        )
    missing = missing_runtime(spec["runtime"])
    if missing:
        raise RuntimeMissing(missing)
    timeout = float(req.get("model_timeout", 60.0))
    pending = list(req["models"])
    before = conditions()
    results = []
    while pending:
        child = _Child(dict(spec, models=pending))
        while pending:
            line = child.next_line(timeout)
            if line == "TIMEOUT" or line is None:
                timed_out = line == "TIMEOUT"
                child.kill()
                error = f"timed out after {timeout:.0f} s" if timed_out else child.why_dead()
                result = {"name": pending[0]["name"], "error": error}
                results.append(result)
                emit(result)
                pending.pop(0)
                break
            msg = json.loads(line)
            if msg.get("started"):
                continue
            if msg.get("refused"):
                child.kill()
                raise PlacementRefused(msg["error"])
            results.append(msg)
            emit(msg)
            pending.pop(0)
        else:
            child.proc.wait(timeout=30)
    return {"results": results, "conditions_before": before, "conditions_after": conditions()}


# --- the JSON-lines server ---------------------------------------------------------------------


def serve(stdin, stdout):
    lock = threading.Lock()

    def send(obj):
        with lock:
            stdout.write(json.dumps(obj) + "\n")
            stdout.flush()

    for line in stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            rid = req.get("id")
        except ValueError as err:
            send({"id": None, "ok": False, "error": {"type": "BadRequest", "message": str(err)}})
            continue
        op = req.get("op")
        try:
            if op == "hello":
                result = {
                    "agent_version": AGENT_VERSION,
                    "protocol": PROTOCOL,
                    "python": platform.python_version(),
                    "pid": os.getpid(),
                }
            elif op == "fingerprint":
                result = fingerprint()
            elif op == "conditions":
                result = conditions()
            elif op == "predict":
                result = predict_files(req)
            elif op == "bench":
                result = bench(req, lambda r, rid=rid: send({"id": rid, "event": "model", "result": r}))
            elif op == "cleanup":
                folder = req["path"]
                shutil.rmtree(folder, ignore_errors=True)
                result = {"removed": folder}
            elif op == "shutdown":
                send({"id": rid, "ok": True, "result": {}})
                return
            else:
                raise ValueError(f"unknown op {op!r}")
            send({"id": rid, "ok": True, "result": result})
        except Exception as err:
            send({"id": rid, "ok": False, "error": {"type": type(err).__name__, "message": str(err)}})


def main(argv):
    if len(argv) >= 2 and argv[1] == "serve":
        serve(sys.stdin, sys.stdout)
    elif len(argv) >= 3 and argv[1] == "measure":
        child_main(argv[2])
    elif len(argv) >= 2 and argv[1] == "version":
        print(json.dumps({"agent_version": AGENT_VERSION, "protocol": PROTOCOL}))
    else:
        sys.stderr.write("usage: ofa_edge_agent.py serve | measure SPEC_JSON | version\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
