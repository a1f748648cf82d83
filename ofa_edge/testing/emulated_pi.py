"""A test bed, not for production use: an emulated aarch64 Raspberry Pi 4 reached over real SSH.

Debian's arm64 userland runs under qemu-user (binfmt_misc) in a chroot; its own arm64 OpenSSH
``sshd`` listens on a 127.0.0.x address, and the official aarch64 wheels of numpy, onnxruntime
and ai-edge-litert (the host's versions) are installed in it. What a Pi shows of itself is a
test double: a Cortex-A72 ``/proc/cpuinfo`` with the Pi 4's ``Model`` line, a ``/sys`` with the
device tree's model, four cpufreq policies under a governor and a thermal zone, and a
``vcgencmd`` that reports throttle bits, the temperature and the ARM clock.

``build_rootfs`` makes the root filesystem once (``debootstrap`` in two stages, then the wheels)
and caches it in the per-user cache; every ``EmulatedPi`` starts from a clean overlay on it, in
private mount and PID namespaces, so the cache is never written. ``arm_unavailable`` says why the
emulator cannot run here (the tests' skip reason). Emulation is 5-50x slower than the host and
noisy: tests on it check function and consistency, never speed, thermals or clocks.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import platformdirs

from ofa_edge.testing.sshd import DEVICE_USER, SshDevice, SshDeviceError, passwd_with_account

SUITE = "bookworm"
PACKAGES = ("python3", "openssh-server", "openssh-sftp-server")
#: The device's runtimes, at the host's installed versions (so outputs can be compared).
WHEELS = ("numpy", "onnxruntime", "ai-edge-litert")
#: Wheel tags bookworm's glibc 2.36 runs (ai-edge-litert 2.x ships manylinux_2_27 only).
PLATFORMS = ("manylinux2014_aarch64", *(f"manylinux_2_{minor}_aarch64" for minor in range(17, 37)))
BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
#: Where the cached root filesystems live (one folder per recipe key); a test knob.
CACHE_ENV = "OFA_EDGE_TESTBED_CACHE"
#: 4 x Cortex-A72 r0p3 and the Pi 4's own lines, as a Pi 4 Model B's kernel prints them.
PI4_CPUINFO = (
    "".join(
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
        "CPU revision\t: 3\n\n"
        for i in range(4)
    )
    + "Hardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 10000000deadbeef\n"
    "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
)
PI4_MODEL = "Raspberry Pi 4 Model B Rev 1.4"
PI4_COMPATIBLE = ("raspberrypi,4-model-b", "brcm,bcm2711")
PI4_MEMINFO = "MemTotal:        3884332 kB\nMemFree:         3401220 kB\nMemAvailable:    3551088 kB\n"
#: ``vcgencmd``'s answers, from the device's own /etc/ofa-testbed/throttled (hex) and temp (m°C).
VCGENCMD = """#!/bin/sh
# A test double of the Raspberry Pi firmware tool (ofa-edge's emulated Pi).
case "$1" in
  get_throttled) echo "throttled=$(cat /etc/ofa-testbed/throttled)" ;;
  measure_temp) t=$(cat /etc/ofa-testbed/temp); echo "temp=$((t / 1000)).$((t % 1000 / 100))'C" ;;
  measure_clock) echo "frequency(48)=1500398464" ;;
  *) echo "vcgencmd test double: $1 is not emulated" >&2; exit 2 ;;
esac
"""
#: The CPU qemu emulates for every process of the device: a Pi 4's (ARMv8.0-A, no dot product,
#: no i8mm, no SVE). qemu's default ("max") offers every extension it knows, so runtimes would
#: pick kernels no Pi has (and LiteRT's int8 models then computed garbage under qemu 7.2).
QEMU_CPU = "cortex-a72"
# In the new mount and PID namespaces: the overlay, /proc with the Pi's cpuinfo and meminfo, a
# few device nodes, then sshd as the chroot's PID 1 (its death ends every session).
_LAUNCH = """set -e
mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/merged"
mount -t proc proc "$2/merged/proc"
mount --bind "$2/cpuinfo" "$2/merged/proc/cpuinfo"
mount --bind "$2/meminfo" "$2/merged/proc/meminfo"
for node in null zero random urandom tty; do
  touch "$2/merged/dev/$node" && mount --bind "/dev/$node" "$2/merged/dev/$node"
done
export QEMU_CPU="$3"
exec chroot "$2/merged" /usr/sbin/sshd -D -f /etc/ofa-testbed/sshd_config -E /var/log/ofa-testbed-sshd.log
"""


def arm_unavailable() -> str | None:
    """Why an emulated Pi cannot run on this machine (a skip reason), or None if it can."""
    if os.geteuid() != 0:
        return "an emulated ARM device needs root (chroot, overlay, binfmt_misc)"
    missing = [tool for tool in ("debootstrap", "unshare", "chroot") if shutil.which(tool) is None]
    if missing or not BINFMT_CONF.is_file():
        return (
            f"{', '.join(missing) or BINFMT_CONF} missing: "
            "apt-get install qemu-user-static debootstrap (as .ci/run does)"
        )
    return _register_binfmt()


def _register_binfmt() -> str | None:
    """Register qemu-aarch64 with binfmt_misc (flag F: it then runs inside chroots too)."""
    entry = BINFMT / "qemu-aarch64"
    try:
        if not (BINFMT / "register").exists():
            subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True,
                           capture_output=True, timeout=10)  # fmt: skip
        if not entry.exists():
            (BINFMT / "register").write_text(BINFMT_CONF.read_text().strip())
        if entry.read_text().splitlines()[0] != "enabled":
            entry.write_text("1")
    except (OSError, subprocess.SubprocessError) as err:
        return f"cannot register qemu-aarch64 with binfmt_misc ({err}): this kernel or container forbids it"
    return None


def cache_root() -> Path:
    """The per-user folder of cached root filesystems (``OFA_EDGE_TESTBED_CACHE`` overrides it)."""
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("ofa-edge")) / "testbed"


def _wheel_pins() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]


def rootfs_key() -> str:
    """A short hash of what the root filesystem holds: a new runtime version gets a new tree."""
    recipe = {"suite": SUITE, "packages": PACKAGES, "wheels": _wheel_pins(), "recipe": 1}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def _mirror() -> str:
    """The Debian mirror apt uses on this host (deb822 or one-line sources)."""
    sources = [*Path("/etc/apt/sources.list.d").glob("*.sources"), Path("/etc/apt/sources.list")]
    for path in sources:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                words = line.split()
                if line.startswith("URIs:") and words[1:] and "security" not in words[1]:
                    return words[1]
                if words[:1] == ["deb"] and len(words) > 2 and "security" not in words[-3]:
                    return next(w for w in words[1:] if "://" in w)
    return "http://deb.debian.org/debian"


def build_rootfs(log: Callable[[str], None] = print) -> Path:
    """The cached arm64 root filesystem, built on first use (about 4-8 min, ~450 MB, one build
    at a time under a lock); ``log`` gets one line per step."""
    reason = arm_unavailable()
    if reason:
        raise SshDeviceError(reason)
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    tree = cache / f"pi-arm64-{SUITE}-{rootfs_key()}"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (tree / "etc" / "ofa-testbed.json").is_file():
            return tree
        partial = tree.with_name(tree.name + ".partial")  # steps done are kept: a rerun resumes
        started = time.monotonic()
        site = partial / "usr/local/lib/python3.11/dist-packages"  # on the device python3's path
        steps = [
            ("debootstrap stage 1", ["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase",
                                     f"--include={','.join(PACKAGES)}", SUITE, str(partial), _mirror()]),
            ("debootstrap stage 2 (emulated)",
             ["chroot", str(partial), "/debootstrap/debootstrap", "--second-stage"]),
            ("aarch64 wheels", [sys.executable, "-m", "pip", "install", "-q", "--no-compile",
                                "--target", str(site), "--only-binary=:all:", "--python-version", "3.11",
                                "--implementation", "cp",
                                *[f"--platform={p}" for p in PLATFORMS], *_wheel_pins()]),
        ]  # fmt: skip
        done = partial.with_name(partial.name + ".steps")
        finished = done.read_text().splitlines() if partial.is_dir() and done.is_file() else []
        if not finished:
            shutil.rmtree(partial, ignore_errors=True)
        for name, argv in steps:
            if name in finished:
                continue
            log(f"emulated Pi root filesystem: {name} ({time.monotonic() - started:.0f} s so far)")
            res = subprocess.run(argv, capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
            if res.returncode:
                tail = " | ".join((res.stdout + res.stderr).strip().splitlines()[-4:])
                raise SshDeviceError(f"building the emulated Pi failed at {name}: {tail}")
            with done.open("a") as f:
                f.write(name + "\n")
        shutil.rmtree(partial / "var/cache/apt/archives", ignore_errors=True)
        stamp: dict[str, object] = {"suite": SUITE, "packages": PACKAGES, "wheels": _wheel_pins()}
        stamp["build_seconds"] = round(time.monotonic() - started)
        (partial / "etc" / "ofa-testbed.json").write_text(json.dumps(stamp))
        partial.rename(tree)
        done.unlink()
        log(f"emulated Pi root filesystem: ready in {time.monotonic() - started:.0f} s at {tree}")
        return tree


class EmulatedPi(SshDevice):
    """A Raspberry Pi 4 Model B (4 x Cortex-A72) as an SSH device, emulated: see the module.

    ``throttled`` is what ``vcgencmd get_throttled`` reports (0x50005: under-voltage and
    throttled now and since boot), ``temperature_c`` the thermal zone's and vcgencmd's reading,
    ``governor`` every cpufreq policy's governor.
    """

    def __init__(
        self,
        rootfs: Path,
        *,
        host: str = "127.0.0.5",
        throttled: int = 0,
        temperature_c: float = 48.3,
        governor: str = "ondemand",
        start_timeout: float = 120.0,
    ) -> None:
        super().__init__(host=host, start_timeout=start_timeout)
        self.rootfs = rootfs
        self.throttled, self.temperature_c, self.governor = throttled, temperature_c, governor

    @property
    def _upper(self) -> Path:
        """The overlay's writable layer: every file the device wrote, seen from the host."""
        return self.root / "upper"

    @property
    def home(self) -> Path:
        return self._upper / "home" / DEVICE_USER

    @property
    def log(self) -> Path:
        return self._upper / "var" / "log" / "ofa-testbed-sshd.log"

    @property
    def _sshd_files(self) -> Path:
        return self._upper / "etc" / "ofa-testbed"

    @property
    def _sshd_view(self) -> str:
        return "/etc/ofa-testbed"

    def _prepare_files(self) -> None:
        """The overlay's folders, the device account, /sys and /proc doubles, keys and config."""
        up = self._upper
        for folder in (self.root / "work", self.root / "merged", self.home, up / "run/sshd", self.log.parent,
                       up / "etc"):  # fmt: skip
            folder.mkdir(parents=True, exist_ok=True)
        (up / "etc" / "passwd").write_text(
            passwd_with_account((self.rootfs / "etc" / "passwd").read_text(), f"/home/{DEVICE_USER}")
        )
        (self.root / "cpuinfo").write_text(PI4_CPUINFO)
        (self.root / "meminfo").write_text(PI4_MEMINFO)
        for path, text in self._sysfs().items():
            (up / "sys" / path).parent.mkdir(parents=True, exist_ok=True)
            (up / "sys" / path).write_text(text)
        vcgencmd = up / "usr" / "bin" / "vcgencmd"
        vcgencmd.parent.mkdir(parents=True, exist_ok=True)
        vcgencmd.write_text(VCGENCMD)
        vcgencmd.chmod(0o755)
        self._write_sshd_files("/usr/local/bin:/usr/bin:/bin", QEMU_CPU=QEMU_CPU, OPENBLAS_CORETYPE="ARMV8")
        (self._sshd_files / "throttled").write_text(f"{self.throttled:#x}\n")
        (self._sshd_files / "temp").write_text(f"{round(self.temperature_c * 1000)}\n")

    def _sysfs(self) -> dict[str, str]:
        """The device's /sys: CPUs online, cpufreq policies, a thermal zone, the device tree."""
        files = {
            "devices/system/cpu/online": "0-3\n",
            "devices/system/cpu/possible": "0-3\n",
            "devices/system/cpu/present": "0-3\n",
            "class/thermal/thermal_zone0/type": "cpu-thermal\n",
            "class/thermal/thermal_zone0/temp": f"{round(self.temperature_c * 1000)}\n",
            "firmware/devicetree/base/model": PI4_MODEL + "\0",
            "firmware/devicetree/base/compatible": "".join(c + "\0" for c in PI4_COMPATIBLE),
        }
        for cpu in range(4):
            policy = f"devices/system/cpu/cpu{cpu}/cpufreq/"
            files |= {
                policy + "scaling_governor": f"{self.governor}\n",
                policy + "scaling_cur_freq": "1500000\n",
                policy + "cpuinfo_max_freq": "1500000\n",
                policy + "cpuinfo_min_freq": "600000\n",
            }
        return files

    def _launch_argv(self) -> list[str]:
        return ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                "/bin/sh", "-c", _LAUNCH, "sh", str(self.rootfs), str(self.root), QEMU_CPU]  # fmt: skip
