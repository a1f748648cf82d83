"""SSH transport: reach a Raspberry Pi, a Jetson or any Linux board through OpenSSH (paramiko).

Strict host-key checking is the default (known_hosts + ``RejectPolicy``, never auto-add); keys
come from ``ssh.key`` or the SSH agent. The socket has TCP_NODELAY (one exec round trip drops
from ~50 ms to ~3 ms). A device behind jump hosts (``ssh.jump``, like OpenSSH's ProxyJump) is
reached through a "direct-tcpip" channel of the login to the last jump host; every hop is
logged in to and host-key checked like the device itself. The connection opens on first use
and reopens after ``close()`` or a dropped link. Every failure is a one-line error naming the
device (and the jump host, if that is where it failed) and the next step.
"""

from __future__ import annotations

import getpass
import logging
import posixpath
import select
import shlex
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple, TypeAlias, TypeVar

import paramiko
from paramiko.hostkeys import InvalidHostKey

from ofa_edge.devices.spec import DeviceSpec, SshOptions
from ofa_edge.devices.transport import Channel, RunResult, Transport, shell_command
from ofa_edge.errors import (
    AuthError,
    CommandTimeout,
    ConfigError,
    DeviceError,
    DeviceUnreachable,
    HostKeyError,
)

KEEPALIVE_S = 15
SFTP_IDLE_TIMEOUT_S = 60.0  # an SFTP request with no answer for this long fails
STDERR_TAIL_LINES = 20
_STDERR_KEEP_BYTES = 64 * 1024
_CHUNK = 64 * 1024
# What a dead or dying link raises from paramiko calls.
_LINK_ERRORS = (paramiko.SSHException, EOFError, OSError)
T = TypeVar("T")
# What an SSH login runs over: TCP, or a channel of a jump host.
_Socket: TypeAlias = socket.socket | paramiko.Channel

# paramiko logs handshake failures with tracebacks; without a handler Python would print them.
# Our errors already say what happened; applications that configure logging still see them.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class SshTransport(Transport):
    """A device reached over SSH: one connection, one exec channel per command, SFTP for files.

    Example::

        with SshTransport(spec) as dev:
            dev.put(Path("model.onnx"), "~/models/model.onnx")
            print(dev.run(["python3", "-V"]).stdout)
    """

    def __init__(self, spec: DeviceSpec) -> None:
        super().__init__(spec.name, spec.slowdown)
        self.spec = spec
        self.options = _ssh_options(spec)
        self._client: paramiko.SSHClient | None = None
        self._jumps: list[paramiko.SSHClient] = []  # the logins to the jump hosts, first hop first
        self._sftp: tuple[paramiko.SFTPClient, str] | None = None  # with the login's home folder

    def _run(self, argv: Sequence[str], *, timeout: float, check: bool, cwd: str | None) -> RunResult:
        """Run ``argv`` (every argument quoted; ``cwd`` may start with ``~/``) with stdin closed.

        Raises ``CommandTimeout`` after ``timeout`` seconds (the channel is closed), and
        ``CommandFailed`` on a non-zero exit when ``check`` is true.
        """
        command = shell_command(argv, self.resolve(cwd) if cwd else None)
        chan = self._exec(command)
        try:
            with suppress(*_LINK_ERRORS):
                chan.shutdown_write()  # stdin at EOF, as `ssh host cmd < /dev/null`
            deadline = time.monotonic() + timeout
            out, err = bytearray(), bytearray()
            while not (chan.eof_received or chan.closed):
                if not _wait_readable(chan, deadline - time.monotonic()):
                    raise self._timed_out(command, timeout)
                _drain(chan, out, err)
            _drain(chan, out, err)
            if not chan.status_event.wait(max(deadline - time.monotonic(), 0.0)):
                raise self._timed_out(command, timeout)
            if chan.exit_status == -1 and not self._alive():
                raise self._link_failure(f"running `{command}`", EOFError("connection closed"))
        finally:
            chan.close()
        res = RunResult(
            device=self.name,
            command=command,
            exit_code=chan.exit_status,
            stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace"),
        )
        if check and not res.ok:
            raise self._failed(res)
        return res

    def open_channel(self, argv: Sequence[str], *, cwd: str | None = None) -> SshChannel:
        """Start ``argv`` on the device and return its line channel (one SSH exec channel)."""
        command = shell_command(argv, self.resolve(cwd) if cwd else None)
        return SshChannel(self, command, self._exec(command))

    def put(self, local: Path, remote: str) -> None:
        """Copy a host file to the device over SFTP, creating the remote parent folders."""
        local = Path(local)
        if not local.is_file():
            raise DeviceError(f"{self.name}: cannot copy {local}: no such file on this machine")
        sftp, _ = self._sftp_session()
        path = self.resolve(remote)
        try:
            _makedirs(sftp, posixpath.dirname(path))
            sftp.put(str(local), path)
        except _LINK_ERRORS as err:
            raise self._link_failure(f"copying {local} to {remote}", err) from err

    def get(self, remote: str, local: Path) -> None:
        """Copy a device file to the host over SFTP (local parent folders are created)."""
        local = Path(local)
        sftp, _ = self._sftp_session()
        path = self.resolve(remote)
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            sftp.get(path, str(local))
        except _LINK_ERRORS as err:
            local.unlink(missing_ok=True)  # paramiko creates the local file before reading
            raise self._link_failure(f"copying {remote} to {local}", err) from err

    def sha256(self, remote: str) -> str | None:
        """As ``Transport.sha256``, with ``~/`` resolved like ``put`` and ``get`` do."""
        return super().sha256(self.resolve(remote))

    def resolve(self, remote: str) -> str:
        """``remote`` with a leading ``~`` or ``~/`` replaced by the login's home folder.

        SFTP and quoted commands never expand ``~`` themselves; other paths are returned as is.
        """
        if remote != "~" and not remote.startswith("~/"):
            return remote
        _, home = self._sftp_session()
        return posixpath.join(home, remote[2:]) if len(remote) > 2 else home

    def close(self) -> None:
        """Drop the connection (and its channels, and the jump hosts'); the next call reconnects."""
        clients = [*self._jumps, *([self._client] if self._client is not None else [])]
        self._client, self._jumps, self._sftp = None, [], None
        _close_all(clients)

    # -- internals -----------------------------------------------------------------------------

    def _alive(self) -> bool:
        link = self._client.get_transport() if self._client is not None else None
        return link is not None and link.is_active()

    def _connect(self) -> paramiko.SSHClient:
        """The live connection, opened now if there is none or the old one died."""
        if self._client is None or not self._alive():
            self.close()
            *self._jumps, self._client = _connect(self.spec)
        return self._client

    def _on_link(self, what: str, opener: Callable[[paramiko.SSHClient], T], *, retry: bool = True) -> T:
        """``opener(client)`` on a live connection. A link that died unnoticed since the last
        call is reopened once: nothing has run on the device yet when an opener fails."""
        reused = self._alive()
        client = self._connect()
        try:
            return opener(client)
        except _LINK_ERRORS as err:
            if retry and reused and not self._alive():
                return self._on_link(what, opener, retry=False)
            raise self._link_failure(what, err) from err

    def _exec(self, command: str) -> paramiko.Channel:
        chan = self._on_link(f"starting `{command}`", lambda c: _require(c.get_transport()).open_session())
        try:
            chan.exec_command(command)
        except _LINK_ERRORS as err:
            chan.close()
            raise self._link_failure(f"starting `{command}`", err) from err
        return chan

    def _sftp_session(self) -> tuple[paramiko.SFTPClient, str]:
        """The connection's SFTP client (opened once) and the login's home folder."""
        if self._sftp is None or not self._alive():

            def start(client: paramiko.SSHClient) -> tuple[paramiko.SFTPClient, str]:
                sftp = client.open_sftp()
                sftp.get_channel().settimeout(SFTP_IDLE_TIMEOUT_S)
                return sftp, sftp.normalize(".")

            self._sftp = self._on_link("opening an SFTP session", start)
        return self._sftp

    def _link_failure(self, what: str, err: BaseException) -> DeviceError:
        """``DeviceUnreachable`` if the link is gone (and forget it), else a plain ``DeviceError``."""
        if self._alive():
            return DeviceError(f"{self.name}: {what} failed: {_reason(err)}", device=self.name)
        self.close()
        opts = self.options
        return DeviceUnreachable(
            f"{self.name}: the connection to {opts.host}:{opts.port} dropped while {what} ({_reason(err)})",
            hint=_ssh_hint(opts),
            device=self.name,
        )

    def _timed_out(self, command: str, timeout: float) -> CommandTimeout:
        return CommandTimeout(
            f"{self.name}: `{command}` did not finish within {timeout:g} s",
            hint="check whether the device is overloaded, or raise its slowdown in the inventory",
            device=self.name,
            timeout=timeout,
        )


class SshChannel(Channel):
    """One long-lived process on the device over one SSH exec channel: lines in, lines out,
    stderr kept (last lines only) for error messages."""

    def __init__(self, transport: SshTransport, command: str, chan: paramiko.Channel) -> None:
        self.transport = transport
        self.command = command
        self._chan = chan
        self._out = bytearray()
        self._err = bytearray()
        self._closed = False

    def write_line(self, line: str) -> None:
        """Send one line (a newline is appended; ``line`` itself must not contain one)."""
        if "\n" in line:
            raise ValueError("write_line: the line must not contain a newline")
        self._check_open()
        try:
            self._chan.sendall((line + "\n").encode())
        except _LINK_ERRORS as err:
            raise self._ended(f"cannot write ({_reason(err)})") from err

    def read_line(self, timeout: float) -> str:
        """The next stdout line without its newline; ``CommandTimeout`` after ``timeout`` s
        (the channel stays usable), ``DeviceUnreachable`` once the process ended."""
        self._check_open()
        deadline = time.monotonic() + timeout
        while (end := self._out.find(b"\n")) < 0:
            ended = self._chan.eof_received or self._chan.closed  # read before draining
            self._pull()
            if b"\n" in self._out:
                continue
            if ended:
                raise self._ended()
            if not _wait_readable(self._chan, deadline - time.monotonic()):
                raise CommandTimeout(
                    f"{self.transport.name}: no line from `{self.command}` within {timeout:g} s",
                    hint="see the process's stderr_tail, or raise the device's slowdown in the inventory",
                    device=self.transport.name,
                    timeout=timeout,
                )
        line = bytes(self._out[:end])
        del self._out[: end + 1]
        return line.decode(errors="replace")

    def close(self) -> None:
        """Send EOF to the process's stdin and close the channel; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with suppress(*_LINK_ERRORS):
            self._chan.shutdown_write()
        self._chan.close()

    @property
    def stderr_tail(self) -> str:
        """The last lines the process wrote to stderr (what has arrived so far; never blocks)."""
        if not self._closed:
            self._pull()
        return "\n".join(self._err.decode(errors="replace").splitlines()[-STDERR_TAIL_LINES:])

    def _pull(self) -> None:
        _drain(self._chan, self._out, self._err)
        if len(self._err) > _STDERR_KEEP_BYTES:
            del self._err[: -_STDERR_KEEP_BYTES // 2]

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceError(f"{self.transport.name}: the channel of `{self.command}` is closed")

    def _ended(self, what: str = "ended") -> DeviceUnreachable:
        name = self.transport.name
        if not self._chan.get_transport().is_active():
            return DeviceUnreachable(
                f"{name}: the connection dropped while `{self.command}` was running",
                hint=_ssh_hint(self.transport.options),
                device=name,
            )
        self._chan.status_event.wait(1.0)  # the exit status follows EOF closely
        code = self._chan.exit_status if self._chan.exit_status_ready() else None
        tail = " | ".join(self.stderr_tail.splitlines()[-3:])
        return DeviceUnreachable(
            f"{name}: `{self.command}` {what}"
            + (f" (exit code {code})" if code not in (None, -1) else "")
            + (f": {tail}" if tail else ""),
            hint="see the process's stderr_tail; is the program installed on the device?",
            device=name,
            exit_code=code,
        )


class OfferedKey(NamedTuple):
    """The host key a host on the way to a device offers now, as OpenSSH prints it."""

    key_type: str
    fingerprint: str  #: ``SHA256:...``
    host: str  #: ``HOST:PORT``, or ``the jump host HOST:PORT``
    known_hosts: Path  #: where ``trust_host`` records it
    jump: bool  #: a jump host's key: the device's comes next


def offered_host_key(spec: DeviceSpec) -> OfferedKey:
    """The key of the next host to trust on the way to the device: the first jump host whose
    offered key is not recorded yet, else the device itself. What ``devices trust`` shows."""
    hop, key = _next_to_trust(spec)
    return OfferedKey(key.get_name(), key.fingerprint, hop.address, hop.opts.known_hosts, hop.jump)


def trust_host(spec: DeviceSpec) -> str:
    """Record the current key of the next host to trust (see ``offered_host_key``) in its
    ``known_hosts`` and return its fingerprint.

    Writes OpenSSH's format (``[host]:port`` off port 22), creating the file and its folders.
    A different key already recorded for the host is never replaced: ``HostKeyError``.
    """
    hop, key = _next_to_trust(spec)
    opts = hop.opts
    entry = _known_hosts_entry(opts)
    old = _recorded_key(hop, key.get_name())
    if old == key:
        return key.fingerprint
    if old is not None:
        raise _changed_host_key(hop, key, old)
    path = opts.known_hosts
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = path.read_text() if path.exists() else ""
        with path.open("a") as f:
            f.write(("" if text.endswith("\n") or not text else "\n") + f"{entry} {key.get_name()} ")
            f.write(f"{key.get_base64()}\n")
    except OSError as err:
        raise HostKeyError(
            f"{spec.name}: cannot write {path}: {_reason(err)}",
            hint="check the file's permissions, or set ssh known_hosts in the inventory",
            device=spec.name,
        ) from err
    return key.fingerprint


# -- connecting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hop:
    """One SSH login on the way to device ``device``: a jump host, or the device itself.
    ``opts.jump`` holds the hops before it, so a hop's errors and hints name the whole path."""

    device: str
    opts: SshOptions
    jump: bool = False

    @property
    def address(self) -> str:
        where = f"{self.opts.host}:{self.opts.port}"
        return f"the jump host {where}" if self.jump else where

    @property
    def what(self) -> str:
        return "the jump host" if self.jump else "the device"


def _hops(spec: DeviceSpec) -> list[_Hop]:
    """The jump hosts (first hop first), then the device."""
    opts = _ssh_options(spec)
    jumps = [_Hop(spec.name, replace(j, jump=opts.jump[:i]), True) for i, j in enumerate(opts.jump)]
    return [*jumps, _Hop(spec.name, opts)]


class _RejectUnknownHost(paramiko.RejectPolicy):
    """paramiko's RejectPolicy, refusing with the offered fingerprint and the trust command."""

    def __init__(self, hop: _Hop) -> None:
        self.hop = hop

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        hop = self.hop
        raise HostKeyError(
            f"{hop.device}: the host key of {hop.address} is not in {hop.opts.known_hosts} "
            f"({hop.what} offers {key.get_name()} {key.fingerprint})",
            hint=f"check that fingerprint on {hop.what} (`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub`), "
            f"then run `ofa-edge devices trust {hop.device}`",
            device=hop.device,
            fingerprint=key.fingerprint,
        )


def _connect(spec: DeviceSpec) -> list[paramiko.SSHClient]:
    """Authenticated logins to the jump hosts and the device (last), each through the one before;
    or the one-line error that says which hop failed, why, and what to do."""
    clients: list[paramiko.SSHClient] = []
    try:
        for hop in _hops(spec):
            clients.append(_login(hop, clients[-1] if clients else None))
    except BaseException:
        _close_all(clients)
        raise
    return clients


def _login(hop: _Hop, via: paramiko.SSHClient | None) -> paramiko.SSHClient:
    """One authenticated connection to ``hop``, directly or through the login ``via``."""
    opts = hop.opts
    if opts.key is not None and not opts.key.is_file():
        raise AuthError(
            f"{hop.device}: the key file {opts.key} of {hop.address} does not exist",
            hint="fix ssh key in the inventory, or remove it to use the SSH agent",
            device=hop.device,
        )
    client = paramiko.SSHClient()
    _load_known_hosts(hop, client.get_host_keys())
    client.set_missing_host_key_policy(_RejectUnknownHost(hop))
    deadline = time.monotonic() + opts.connect_timeout
    sock = _open_socket(hop, via)
    try:
        _handshake(hop, client, sock, max(deadline - time.monotonic(), 0.1))
    except BaseException:
        client.close()
        sock.close()
        raise
    return client


def _handshake(hop: _Hop, client: paramiko.SSHClient, sock: _Socket, left: float) -> None:
    """SSH over ``sock``: banner and key exchange within ``left`` s, host key check, then auth."""
    opts = hop.opts
    try:
        client.connect(
            opts.host,
            opts.port,
            username=_user(opts),
            key_filename=str(opts.key) if opts.key else None,
            allow_agent=opts.key is None,
            look_for_keys=opts.key is None,
            sock=sock,
            timeout=left,
            banner_timeout=left,
            auth_timeout=opts.connect_timeout,
            channel_timeout=opts.connect_timeout,
        )
    except HostKeyError:  # from _RejectUnknownHost (a ConnectionError, so an OSError too)
        raise
    except paramiko.BadHostKeyException as err:
        raise _changed_host_key(hop, err.key, err.expected_key) from err
    except _LINK_ERRORS as err:
        link = client.get_transport()
        if isinstance(err, paramiko.SSHException) and link and link.is_active() and link.initial_kex_done:
            raise _auth_failed(hop, err) from err  # the host key was accepted: only auth is left
        raise _no_handshake(hop, link, err) from err
    _require(client.get_transport()).set_keepalive(KEEPALIVE_S)


def _open_socket(hop: _Hop, via: paramiko.SSHClient | None) -> _Socket:
    """A TCP connection to ``hop``, or with ``via`` a "direct-tcpip" channel that the host
    logged in to by ``via`` opens to it (OpenSSH's ProxyJump)."""
    opts = hop.opts
    if via is not None:
        try:
            return _require(via.get_transport()).open_channel(
                "direct-tcpip", (opts.host, opts.port), ("127.0.0.1", 0), timeout=opts.connect_timeout
            )
        except paramiko.ChannelException as err:  # the jump host could not connect onward
            raise _unreachable(hop, f"from {_address(opts.jump[-1])}: {err.text}") from err
        except _LINK_ERRORS as err:
            raise _unreachable(hop, f"through {_address(opts.jump[-1])}: {_reason(err)}") from err
    try:
        sock = socket.create_connection((opts.host, opts.port), timeout=opts.connect_timeout)
    except socket.gaierror as err:
        raise _unreachable(hop, f"unknown host name: {err.strerror}") from err
    except TimeoutError as err:
        raise _unreachable(hop, f"no answer within {opts.connect_timeout:g} s") from err
    except OSError as err:
        raise _unreachable(hop, _reason(err)) from err
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # ~3 ms instead of ~50 ms per exec
    return sock


def _next_to_trust(spec: DeviceSpec) -> tuple[_Hop, paramiko.PKey]:
    """The first hop whose offered key is not the one recorded for it (the device if every jump
    host's is), with that key. Checks each jump host's key and logs in before going on."""
    hops = _hops(spec)
    clients: list[paramiko.SSHClient] = []
    try:
        for hop in hops:
            key = _offered_host_key(hop, clients[-1] if clients else None)
            if not hop.jump or _recorded_key(hop, key.get_name()) != key:
                return hop, key
            clients.append(_login(hop, clients[-1] if clients else None))
        raise AssertionError("the last hop is the device")
    finally:
        _close_all(clients)


def _offered_host_key(hop: _Hop, via: paramiko.SSHClient | None) -> paramiko.PKey:
    """The host key ``hop`` offers (a key exchange, no login)."""
    opts = hop.opts
    link = paramiko.Transport(_open_socket(hop, via))
    try:
        link.banner_timeout = opts.connect_timeout
        link.start_client(timeout=opts.connect_timeout)
        return link.get_remote_server_key()
    except _LINK_ERRORS as err:
        raise _no_handshake(hop, link, err) from err
    finally:
        link.close()


def _recorded_key(hop: _Hop, key_type: str) -> paramiko.PKey | None:
    """The key of type ``key_type`` that ``hop``'s known_hosts records for it, if any."""
    known = paramiko.HostKeys()
    _load_known_hosts(hop, known)
    return (known.lookup(_known_hosts_entry(hop.opts)) or {}).get(key_type)


def _load_known_hosts(hop: _Hop, keys: paramiko.HostKeys) -> None:
    path = hop.opts.known_hosts
    if not path.is_file():
        return
    try:
        keys.load(str(path))
    except (OSError, InvalidHostKey) as err:
        raise HostKeyError(
            f"{hop.device}: cannot read the known_hosts file {path}: {_reason(err)}",
            hint="fix or remove the broken line, or set ssh known_hosts in the inventory",
            device=hop.device,
        ) from err


# -- errors ----------------------------------------------------------------------------------------


def _changed_host_key(hop: _Hop, offered: paramiko.PKey, recorded: paramiko.PKey) -> HostKeyError:
    opts = hop.opts
    entry = _known_hosts_entry(opts)
    return HostKeyError(
        f"{hop.device}: WARNING, the host key of {hop.address} has CHANGED (possible "
        f"man-in-the-middle attack): {opts.known_hosts} has {recorded.get_name()} "
        f"{recorded.fingerprint}, {hop.what} now offers {offered.get_name()} {offered.fingerprint}",
        hint=f"only if {hop.what} was reinstalled: remove the old entry "
        f"(`ssh-keygen -R {shlex.quote(entry)} -f {shlex.quote(str(opts.known_hosts))}`), "
        f"then run `ofa-edge devices trust {hop.device}`",
        device=hop.device,
        fingerprint=offered.fingerprint,
        recorded_fingerprint=recorded.fingerprint,
    )


def _auth_failed(hop: _Hop, err: BaseException) -> AuthError:
    opts = hop.opts
    login = f"{_user(opts)}@{opts.host}:{opts.port}" + (" (a jump host)" if hop.jump else "")
    if isinstance(err, paramiko.PasswordRequiredException):
        return AuthError(
            f"{hop.device}: the key file {opts.key} is passphrase-protected",
            hint=f"load it into the SSH agent (`ssh-add {opts.key}`) and remove ssh key from the "
            "inventory so the agent is used",
            device=hop.device,
        )
    used = f"the key file {opts.key}" if opts.key else "the keys of the SSH agent and ~/.ssh/id_*"
    public = f"{opts.key}.pub" if opts.key else "~/.ssh/id_ed25519.pub"
    jumps = f"-o ProxyJump={','.join(_address(j) for j in opts.jump)} " if opts.jump else ""
    return AuthError(
        f"{hop.device}: {login} rejected {used} ({_reason(err)})",
        hint=f"install the public key on {hop.what}: `ssh-copy-id -i {public} {jumps}-p {opts.port} "
        f"{_user(opts)}@{opts.host}`",
        device=hop.device,
    )


def _unreachable(hop: _Hop, reason: str) -> DeviceUnreachable:
    opts = hop.opts
    return DeviceUnreachable(
        f"{hop.device}: cannot reach {hop.address} ({reason})",
        hint=f"is {hop.what} on and sshd running? {_ssh_hint(opts)}",
        device=hop.device,
        host=opts.host,
        port=opts.port,
    )


# -- small helpers ---------------------------------------------------------------------------------


def _no_handshake(hop: _Hop, link: paramiko.Transport | None, err: BaseException) -> DeviceUnreachable:
    if link is None or not link.remote_version:
        timeout = hop.opts.connect_timeout
        return _unreachable(hop, f"connected, but no SSH banner within {timeout:g} s")
    return _unreachable(hop, f"SSH handshake with {link.remote_version} failed: {_reason(err)}")


def _ssh_options(spec: DeviceSpec) -> SshOptions:
    if spec.ssh is None:
        raise ConfigError(
            f"device {spec.name!r} has no ssh settings",
            hint='set transport = "ssh" and host = "ADDRESS" in the inventory',
        )
    return spec.ssh


def _user(opts: SshOptions) -> str:
    return opts.user or getpass.getuser()


def _address(opts: SshOptions) -> str:
    """``user@host:port`` as ``ssh -J`` takes it."""
    return f"{_user(opts)}@{opts.host}:{opts.port}"


def _ssh_hint(opts: SshOptions) -> str:
    jumps = f"-J {','.join(_address(j) for j in opts.jump)} " if opts.jump else ""
    return f"try `ssh {jumps}-p {opts.port} {_user(opts)}@{opts.host} true`"


def _close_all(clients: Sequence[paramiko.SSHClient]) -> None:
    """Close logins last first: the device's before the jump hosts' it runs through."""
    for client in reversed(clients):
        client.close()


def _known_hosts_entry(opts: SshOptions) -> str:
    return opts.host if opts.port == 22 else f"[{opts.host}]:{opts.port}"


def _reason(err: BaseException) -> str:
    return (err.strerror if isinstance(err, OSError) and err.strerror else str(err)) or type(err).__name__


def _require(link: paramiko.Transport | None) -> paramiko.Transport:
    if link is None:
        raise paramiko.SSHException("no SSH connection")
    return link


def _drain(chan: paramiko.Channel, out: bytearray, err: bytearray) -> None:
    """Append whatever stdout/stderr has already arrived (never blocks)."""
    while chan.recv_ready():
        out += chan.recv(_CHUNK)
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(_CHUNK)


def _wait_readable(chan: paramiko.Channel, left: float) -> bool:
    """Wait until ``chan`` has output or EOF, at most ``left`` seconds; False on timeout."""
    if left <= 0:
        return False
    poller = select.poll()  # unlike select(), works for descriptors above 1024 (large fleets)
    poller.register(chan.fileno(), select.POLLIN)
    return bool(poller.poll(left * 1000))


def _makedirs(sftp: paramiko.SFTPClient, folder: str) -> None:
    missing = []
    while folder not in ("", "/"):
        try:
            sftp.stat(folder)
            break
        except FileNotFoundError:
            missing.append(folder)
            folder = posixpath.dirname(folder)
    for path in reversed(missing):
        sftp.mkdir(path)
