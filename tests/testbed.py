"""pytest fixtures with real OpenSSH devices on loopback (``ofa_edge.testing.sshd``), the measures
that tests derive their time budgets from, and a simulated cpufreq governor.

Skipped, with the reason, only where sshd is missing or we are not root. Every device is torn
down (process tree, cgroup, files) even when its tests fail. No test asserts a fixed wall-clock
bound on device work: budgets are multiples of a calibration timed on the device under test
(``bench_seconds``, ``cpu_seconds``), so they hold on a device ten times slower than this host.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.devices.ssh import SshTransport
from ofa_edge.devices.transports import open_transport
from ofa_edge.testing.sshd import SshDevice, sshd_unavailable

#: A fixed amount of pure-Python CPU work; it prints the seconds it took on the device.
CPU_LOOP = (
    "import time; t = time.perf_counter(); sum(i * i for i in range(800_000)); print(time.perf_counter() - t)"
)
#: The environment variable the agent reads its sysfs root from (a test knob of the agent).
SYSFS_ENV = "OFA_EDGE_AGENT_SYSFS"
#: A test knob: a CPU quota (fraction of one core) for every test-bed SSH device, to run the
#: tests on slow devices; the slow device then gets a quarter of it (at most its 10 %).
QUOTA_ENV = "OFA_EDGE_TESTBED_CPU_QUOTA"


def _device(host: str, cpu_quota: float | None = None) -> Iterator[SshDevice]:
    reason = sshd_unavailable()
    if reason:
        pytest.skip(reason)
    knob = os.environ.get(QUOTA_ENV)
    if knob:
        cpu_quota = float(knob) if cpu_quota is None else min(cpu_quota, float(knob) / 4)
    with SshDevice(host=host, cpu_quota=cpu_quota) as device:
        yield device


@pytest.fixture(scope="session")
def ssh_device() -> Iterator[SshDevice]:
    """A device with no CPU limit (a "Jetson") on 127.0.0.2, shared by the session."""
    yield from _device("127.0.0.2")


@pytest.fixture(scope="session")
def slow_ssh_device() -> Iterator[SshDevice]:
    """A device capped at 10 % of one core (a "Raspberry Pi") on 127.0.0.3."""
    yield from _device("127.0.0.3", cpu_quota=0.1)


@pytest.fixture
def fresh_ssh_device() -> Iterator[SshDevice]:
    """A device of the test's own, for tests that change it (its host key, its sessions)."""
    yield from _device("127.0.0.4")


@pytest.fixture(scope="session")
def jump_ssh_device() -> Iterator[SshDevice]:
    """A jump host (bastion) on 127.0.0.6, for devices reached through it."""
    yield from _device("127.0.0.6")


@pytest.fixture(scope="session")
def jumped_ssh_device() -> Iterator[SshDevice]:
    """A device on 127.0.0.7 that tests reach through a jump host."""
    yield from _device("127.0.0.7")


@pytest.fixture
def ssh_transport(ssh_device: SshDevice) -> Iterator[SshTransport]:
    """An ``SshTransport`` to ``ssh_device`` named "jetson", closed after the test."""
    with SshTransport(ssh_device.device_spec("jetson")) as transport:
        yield transport


# --- how fast is this device ---------------------------------------------------------------------


def cpu_seconds(spec: DeviceSpec, tries: int = 2) -> float:
    """Wall seconds ``CPU_LOOP`` takes on the device (the best of ``tries``): its speed."""
    with open_transport(spec) as transport:
        return min(float(transport.run(["python3", "-c", CPU_LOOP]).stdout) for _ in range(tries))


def bench_seconds(session: AgentSession, models: Sequence[Path], **bench: Any) -> float:
    """Wall seconds one ``session.bench(models, **bench)`` takes on the device, every model
    measured: the unit a test's time budget for the same work on the same device is a multiple of."""
    started = time.monotonic()
    report = session.bench(models, **bench)
    assert [r.error for r in report.results] == [None] * len(models), report.results
    return time.monotonic() - started


def measuring_children(workdir: str) -> list[int]:
    """PIDs of the agent's measuring children (``ofa_edge_agent.py measure``) run from ``workdir``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 2 and argv[2] == b"measure" and argv[1].startswith(workdir.encode()):
            found.append(int(entry.name))
    return found


# --- a simulated cpufreq governor -----------------------------------------------------------------


class SimulatedCpufreq:
    """A test double of the kernel's cpufreq: a folder laid out like /sys that the agent reads
    instead (``OFA_EDGE_AGENT_SYSFS``), its clock moved by a thread as a governor moves it.

    The agent reads the clocks just before a batch's measuring child starts and just after it
    ends; the clock is ``clock(0)`` MHz at first and ``clock(n)`` once the n-th measuring child of
    the agent in ``workdir`` is running, as ondemand raises or lowers it when load appears. So
    ``clock(n) != clock(n - 1)`` is a clock change during batch n. ``children`` counts them.
    """

    def __init__(
        self,
        root: Path,
        workdir: str,
        clock: Callable[[int], int],
        governor: str = "ondemand",
        cpus: int = 2,
    ) -> None:
        self.root, self.workdir, self.clock = root, workdir, clock
        self.children = 0
        cpu = root / "devices" / "system" / "cpu"
        self._freqs = [cpu / f"cpu{i}" / "cpufreq" / "scaling_cur_freq" for i in range(cpus)]
        for freq in self._freqs:
            freq.parent.mkdir(parents=True, exist_ok=True)
            (freq.parent / "scaling_governor").write_text(governor + "\n")
        (cpu / "online").write_text(f"0-{cpus - 1}\n")
        self._set(clock(0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._govern, daemon=True)

    def _set(self, mhz: int) -> None:
        for freq in self._freqs:
            tmp = freq.with_suffix(".tmp")
            tmp.write_text(f"{mhz * 1000}\n")
            tmp.replace(freq)  # atomic, as sysfs reads are: never a half-written number

    def _govern(self) -> None:
        seen: set[int] = set()
        while not self._stop.wait(0.005):
            new = set(measuring_children(self.workdir)) - seen
            for pid in sorted(new):
                seen.add(pid)
                self.children += 1
                self._set(self.clock(self.children))

    def __enter__(self) -> SimulatedCpufreq:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def steady_cpufreq(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimulatedCpufreq:
    """Local agents of the test read a cpufreq tree whose clock never moves (a "performance"
    governor), so tests that count re-measured batches hold on hosts whose clocks do move."""
    root = tmp_path / "steady-sysfs"
    monkeypatch.setenv(SYSFS_ENV, str(root))
    return SimulatedCpufreq(root, "", lambda n: 1500, governor="performance")
