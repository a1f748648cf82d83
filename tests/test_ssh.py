"""The SSH transport against real OpenSSH devices on loopback: commands, quoting, files,
channels, host keys, failures that must be one-line errors, reconnects and CPU-limited devices."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ofa_edge.devices.ssh import SshTransport, offered_host_key, trust_host
from ofa_edge.errors import (
    AuthError,
    CommandFailed,
    CommandTimeout,
    DeviceError,
    DeviceUnreachable,
    HostKeyError,
)
from ofa_edge.testing.sshd import SshDevice
from tests.testbed import cpu_seconds

pytestmark = pytest.mark.timeout(60)

# Each must reach the program as one verbatim argument; none may run anything.
NASTY_ARGS = [
    "two words",
    "semi;colon touch PWNED",
    "$(touch PWNED)",
    "`touch PWNED`",
    "it's",
    'say "hi"',
    "back\\slash",
    "*",
    "",
    "-n",
    "line\nbreak",
    "$HOME",
    "|| touch PWNED",
    "&& touch PWNED &",
]
NASTY_CWD = "~/quoting test/we ird; $(touch PWNED) `touch PWNED` 'single' \"double\""
PRINT_ARGV = "import json, os, sys; print(json.dumps([os.getcwd(), *sys.argv[1:]]))"


def openssh_fingerprint(public_key: Path) -> str:
    """The fingerprint as OpenSSH itself computes it (independent of our code)."""
    out = subprocess.run(["ssh-keygen", "-lf", str(public_key)], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


def connection_id(transport: SshTransport) -> str:
    """Client address and port of the SSH connection the command ran over."""
    return transport.run(["printenv", "SSH_CONNECTION"]).stdout


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_device_account_environment(ssh_device: SshDevice, ssh_transport: SshTransport) -> None:
    res = ssh_transport.run(["sh", "-c", 'echo "$HOME"; python3 -c "import numpy, onnxruntime"'])
    assert res.stdout == f"{ssh_device.home}\n"
    assert ssh_transport.resolve("~/a b") == f"{ssh_device.home}/a b"


def test_run_exit_codes_output_and_check(ssh_transport: SshTransport) -> None:
    res = ssh_transport.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert (res.device, res.exit_code, res.ok, res.stdout, res.stderr) == (
        "jetson",
        3,
        False,
        "out\n",
        "err\n",
    )
    assert ssh_transport.run(["true"]).ok
    with pytest.raises(CommandFailed, match=r"^jetson: `sh -c .*` exited with 4: bad$") as info:
        ssh_transport.run(["sh", "-c", "echo bad >&2; exit 4"])
    assert info.value.fields["exit_code"] == 4
    assert ssh_transport.run(["cat"], timeout=5).stdout == ""  # stdin is at EOF: no hang


def test_run_timeout_then_transport_still_works(ssh_transport: SshTransport) -> None:
    start = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"`sleep 30` did not finish within 0.5 s"):
        ssh_transport.run(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - start < 10, "the command was cut at its timeout, not waited for"
    assert ssh_transport.run(["echo", "still here"]).stdout == "still here\n"


def test_arguments_and_cwd_arrive_verbatim_and_never_run(
    ssh_device: SshDevice, ssh_transport: SshTransport
) -> None:
    cwd = ssh_transport.resolve(NASTY_CWD)
    ssh_transport.run(["mkdir", "-p", cwd])
    res = ssh_transport.run(["python3", "-c", PRINT_ARGV, *NASTY_ARGS], cwd=NASTY_CWD)
    got_cwd, *got_args = json.loads(res.stdout)
    assert got_args == NASTY_ARGS
    assert got_cwd == cwd
    assert Path(cwd).is_dir()  # the device's home is a host folder
    assert not list(ssh_device.root.rglob("PWNED"))


def test_put_get_sha256_round_trip(
    ssh_device: SshDevice, ssh_transport: SshTransport, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 256 + os.urandom(200_000)
    src = tmp_path / "model.bin"
    src.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    for remote in ("~/ofa edge/new dir/model.bin", f"{ssh_device.home}/it's; $(x)/m.bin"):
        ssh_transport.put(src, remote)
        assert ssh_transport.sha256(remote) == digest
        back = tmp_path / "back" / "copy.bin"
        ssh_transport.get(remote, back)
        assert back.read_bytes() == data
    assert (ssh_device.home / "ofa edge" / "new dir" / "model.bin").read_bytes() == data
    assert ssh_transport.sha256("~/missing.bin") is None
    with pytest.raises(DeviceError, match=r"^jetson: copying ~/missing.bin to .* failed"):
        ssh_transport.get("~/missing.bin", tmp_path / "missing.bin")
    assert not (tmp_path / "missing.bin").exists()


def test_channel_lines_timeout_and_stderr(ssh_transport: SshTransport) -> None:
    chan = ssh_transport.open_channel(["sh", "-c", "echo ready >&2; exec cat"])
    try:
        for line in ["hello", "héllo wörld ✓", '{"op": "ping", "id": 1}', ""]:
            chan.write_line(line)
            assert chan.read_line(timeout=5) == line
        start = time.monotonic()
        with pytest.raises(CommandTimeout, match="no line from"):
            chan.read_line(timeout=0.3)
        assert 0.25 <= time.monotonic() - start < 2
        chan.write_line("after a timeout")
        assert chan.read_line(timeout=5) == "after a timeout"
        deadline = time.monotonic() + 5
        while chan.stderr_tail != "ready" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert chan.stderr_tail == "ready"
        with pytest.raises(ValueError, match="newline"):
            chan.write_line("two\nlines")
    finally:
        chan.close()
    chan.close()
    with pytest.raises(DeviceError, match="closed"):
        chan.read_line(timeout=1)


def test_channel_reports_the_end_of_the_process(ssh_transport: SshTransport) -> None:
    chan = ssh_transport.open_channel(["sh", "-c", "echo last; echo 'agent crashed' >&2; exit 3"])
    try:
        assert chan.read_line(timeout=5) == "last"
        with pytest.raises(DeviceUnreachable, match=r"exit code 3\): agent crashed"):
            chan.read_line(timeout=5)
    finally:
        chan.close()


def test_unknown_host_key_shows_fingerprint_and_trust_command(ssh_device: SshDevice) -> None:
    spec = ssh_device.device_spec("pi4", known_hosts=ssh_device.untrusted_known_hosts)
    expected = openssh_fingerprint(ssh_device.host_public_key)
    with pytest.raises(HostKeyError) as info, SshTransport(spec) as transport:
        transport.run(["true"])
    message = str(info.value)
    assert expected in message and "ofa-edge devices trust pi4" in message
    assert "\n" not in message
    assert offered_host_key(spec)[:2] == ("ssh-ed25519", expected)


def test_trust_host_records_openssh_entry_then_connects(ssh_device: SshDevice, tmp_path: Path) -> None:
    known_hosts = tmp_path / "new" / ".ssh" / "known_hosts"
    spec = ssh_device.device_spec("pi4", known_hosts=known_hosts)
    expected = openssh_fingerprint(ssh_device.host_public_key)
    assert trust_host(spec) == expected
    assert trust_host(spec) == expected  # idempotent: one entry
    entry = f"[{ssh_device.host}]:{ssh_device.port}"
    [line] = known_hosts.read_text().splitlines()
    assert line.startswith(f"{entry} ssh-ed25519 ")
    found = subprocess.run(["ssh-keygen", "-F", entry, "-f", str(known_hosts)], capture_output=True)
    assert found.returncode == 0  # OpenSSH reads it as the entry for this host and port
    with SshTransport(spec) as transport:
        assert transport.run(["echo", "trusted"]).stdout == "trusted\n"


def test_changed_host_key_is_refused_loudly(fresh_ssh_device: SshDevice) -> None:
    device = fresh_ssh_device
    spec = device.device_spec("jetson")
    old = openssh_fingerprint(device.host_public_key)
    device.regenerate_host_key()
    new = openssh_fingerprint(device.host_public_key)
    with pytest.raises(HostKeyError) as info, SshTransport(spec) as transport:
        transport.run(["true"])
    message = str(info.value)
    assert "CHANGED" in message and "man-in-the-middle" in message
    assert old in message and new in message and "ssh-keygen -R" in message and "\n" not in message
    with pytest.raises(HostKeyError, match="CHANGED"):
        trust_host(spec)  # never replaces a recorded key by itself
    entry = f"[{device.host}]:{device.port}"
    subprocess.run(
        ["ssh-keygen", "-R", entry, "-f", str(spec.ssh.known_hosts)], check=True, capture_output=True
    )
    assert trust_host(spec) == new
    with SshTransport(spec) as transport:
        assert transport.run(["true"]).ok


def test_closed_port_is_unreachable_fast(ssh_device: SshDevice) -> None:
    port = closed_port()
    spec = ssh_device.device_spec("gone", host="127.0.0.1", port=port)
    start = time.monotonic()
    with pytest.raises(DeviceUnreachable) as info, SshTransport(spec) as transport:
        transport.run(["true"])
    assert spec.ssh is not None
    assert time.monotonic() - start < spec.ssh.connect_timeout, "refused at once, not timed out"
    assert f"127.0.0.1:{port}" in str(info.value) and f"ssh -p {port} " in str(info.value)


def test_listener_without_banner_is_unreachable_within_timeout(ssh_device: SshDevice) -> None:
    with socket.socket() as mute:  # accepts (kernel backlog) but never speaks SSH
        mute.bind(("127.0.0.1", 0))
        mute.listen(4)
        spec = ssh_device.device_spec(
            "mute", host="127.0.0.1", port=mute.getsockname()[1], connect_timeout=1.5
        )
        for attempt in (lambda: SshTransport(spec).run(["true"]), lambda: offered_host_key(spec)):
            start = time.monotonic()
            with pytest.raises(DeviceUnreachable, match="no SSH banner within 1.5 s"):
                attempt()
            assert 1.0 <= time.monotonic() - start < 5


def test_wrong_or_missing_client_key_is_an_auth_error(
    ssh_device: SshDevice, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stranger = tmp_path / "stranger_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(AuthError) as info, SshTransport(ssh_device.device_spec("pi", key=stranger)) as t:
        t.run(["true"])
    assert f"rejected the key file {stranger}" in str(info.value) and "ssh-copy-id" in str(info.value)
    with pytest.raises(AuthError, match="does not exist"):
        SshTransport(ssh_device.device_spec("pi", key=tmp_path / "nope")).run(["true"])
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no agent, no ~/.ssh/id_*: nothing to offer
    with pytest.raises(AuthError, match="rejected the keys of the SSH agent"):
        SshTransport(ssh_device.device_spec("pi", key=None)).run(["true"])


def test_reconnects_after_close_and_after_the_server_drops_the_link(
    fresh_ssh_device: SshDevice, tmp_path: Path
) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"\x00payload\xff")
    with SshTransport(fresh_ssh_device.device_spec("jetson")) as transport:
        first = connection_id(transport)
        assert connection_id(transport) == first  # one connection carries many commands
        transport.close()
        second = connection_id(transport)
        assert second != first
        transport.put(src, "~/before.bin")
        assert fresh_ssh_device.kill_sessions() > 0
        assert connection_id(transport) not in (first, second)
        assert fresh_ssh_device.kill_sessions() > 0
        transport.put(src, "~/after.bin")  # the SFTP session is reopened too
        assert (fresh_ssh_device.home / "after.bin").read_bytes() == src.read_bytes()


def test_cpu_limited_device_is_slower(ssh_device: SshDevice, slow_ssh_device: SshDevice) -> None:
    fast, slow = cpu_seconds(ssh_device.device_spec()), cpu_seconds(slow_ssh_device.device_spec())
    assert slow > 1.5 * fast, (fast, slow)
