"""What the benchmark scripts share: the device to measure on (``local`` or a test-bed sshd)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ofa_edge.devices.spec import DeviceSpec, local_device


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """``--device local|sshd|pi``: this machine, a real OpenSSH sshd on 127.0.0.2, or the emulated
    aarch64 Raspberry Pi 4 (the test bed); tables measured here name them ``testbed-local``,
    ``testbed-sshd`` and ``testbed-pi``."""
    parser.add_argument("--device", default="local", choices=["local", "sshd", "pi"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--cpu-quota", type=float, help="sshd: run it at this fraction of one core (a cgroup)"
    )


@contextlib.contextmanager
def device_spec(args: argparse.Namespace) -> Iterator[DeviceSpec]:
    """The device spec to open sessions on; a test-bed sshd is started and torn down around it."""
    with tempfile.TemporaryDirectory(prefix="ofa-edge-bench-") as tmp:
        if args.device == "local":
            yield dataclasses.replace(
                local_device(), name="testbed-local", workdir=str(Path(tmp) / "agent"), threads=args.threads
            )
            return
        if args.device == "pi":
            from ofa_edge.testing.emulated_pi import EmulatedPi, build_rootfs

            with EmulatedPi(build_rootfs()) as pi:
                yield dataclasses.replace(pi.device_spec("testbed-pi", threads=args.threads), slowdown=20.0)
            return
        from ofa_edge.testing.sshd import SshDevice, sshd_unavailable

        reason = sshd_unavailable()
        if reason:
            raise SystemExit(f"cannot start the test-bed sshd: {reason}")
        with SshDevice(host="127.0.0.2", cpu_quota=args.cpu_quota) as device:
            yield device.device_spec("testbed-sshd", threads=args.threads)
