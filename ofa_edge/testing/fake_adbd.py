"""A TEST DOUBLE of Android's adbd: a fake phone on 127.0.0.1 that the real ``adb`` server talks to.

There is no adbd on a Linux host, so this speaks the ADB transport protocol itself (AOSP
``protocol.txt``, ``SERVICES.TXT``, ``SYNC.TXT``, the shell protocol) well enough for the real
client to ``adb connect 127.0.0.1:PORT``, then ``shell`` (v1 and v2, with stdin), ``exec-out``,
``push``, ``pull`` and ``ls``. Like a phone, it asks an unknown host to authorize (AUTH, see
``authorized_keys``) and hangs up (SIGHUP) on a command whose stream closed. Its "phone" is this
host: commands run with this host's ``/bin/sh`` and programs, in a sandbox folder (cwd and
HOME); file transfers are confined to it. Android's scratch folder ``/data/local/tmp`` lives in
the sandbox (``android_path``): that path in command lines, shell stdin and sync requests is
mapped there, and mapped back in what commands print. Its ``dumpsys`` answers only
``dumpsys thermalservice``, in the layout of AOSP's ThermalManagerService dump, with the thermal
statuses a test sets (``set_thermal``).

    with FakeAdbd(tmp_path / "phone") as phone:
        subprocess.run(["adb", "connect", phone.serial], check=True)
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import IO

A_CNXN, A_OPEN, A_OKAY, A_WRTE, A_CLSE = 0x4E584E43, 0x4E45504F, 0x59414B4F, 0x45545257, 0x45534C43
A_AUTH = 0x48545541
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
TOKEN_SIZE = 20  # adbd's random token: signed by the host as if it were a SHA-1 digest
# PKCS#1 v1.5 DigestInfo prefix of a SHA-1 digest: what RSA_verify(NID_sha1, ...) expects.
_SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")
_ANDROID_PUBKEY = struct.Struct("<II256s256sI")  # words, n0inv, n, rr (little endian), exponent
ANDROID_TMP = "/data/local/tmp"  # the shell user's writable folder on every Android phone
# ANDROID_TMP as a whole path component of a command line or input (not inside another path).
_ANDROID_TMP_WORD = re.compile(rb"""(?<![^\s'"=:;(`])/data/local/tmp(?=[/\s'";)`]|$)""")
A_VERSION = 0x01000001  # "skip checksum" revision, as adbd since 2018
MAX_PAYLOAD = 256 * 1024
SYNC_DATA_MAX = 64 * 1024
SYNC_PATH_MAX = 1024
FEATURES = ("shell_v2", "cmd")
EXIT_WAIT_S = 10.0  # how long a killed or finished command may take to be reaped
_HEADER = struct.Struct("<6I")
_SHELL_HEADER = struct.Struct("<BI")
_SYNC_HEADER = struct.Struct("<4sI")
_STDIN, _STDOUT, _STDERR, _EXIT, _CLOSE_STDIN = 0, 1, 2, 3, 4


class _StreamClosed(Exception):
    """The stream ended (either side closed it, or the link dropped)."""


def pack_message(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    """One ADB transport message: the 24-byte little-endian header and its payload."""
    return _HEADER.pack(command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF) + data


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise _StreamClosed("connection closed")
        buf += chunk
    return bytes(buf)


class _Stream:
    """One ADB stream (OPEN ... CLSE): one WRTE in flight each way, acknowledged by OKAY."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int) -> None:
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._inbox: deque[bytes] = deque()
        self._buffer = bytearray()
        self._can_write = True  # the opener may receive one WRTE right after our OKAY
        self.closed = False
        self._sent_close = False

    # Stream waits end when data comes or the stream closes; stop() closes every stream.

    def write(self, data: bytes) -> None:
        """Send ``data`` in WRTE messages, waiting for the peer's OKAY before each one."""
        with self._write_lock:
            for start in range(0, len(data), self.conn.max_payload):
                with self._cond:
                    self._cond.wait_for(lambda: self._can_write or self.closed)
                    if self.closed:
                        raise _StreamClosed("the stream is closed")
                    self._can_write = False
                self.conn.send(
                    A_WRTE, self.local_id, self.remote_id, data[start : start + self.conn.max_payload]
                )

    def read(self) -> bytes:
        """The next WRTE payload (acknowledged with OKAY once taken); ``b""`` once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._inbox or self.closed)
            if not self._inbox:
                return b""
            data = self._inbox.popleft()
        self.conn.send(A_OKAY, self.local_id, self.remote_id)
        return data

    def read_exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes of the incoming byte stream (requests may span WRTEs)."""
        while len(self._buffer) < n:
            chunk = self.read()
            if not chunk:
                raise _StreamClosed("stream closed mid-request")
            self._buffer += chunk
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def on_okay(self) -> None:
        with self._cond:
            self._can_write = True
            self._cond.notify_all()

    def on_data(self, data: bytes) -> None:
        with self._cond:
            self._inbox.append(data)
            self._cond.notify_all()

    def on_remote_close(self) -> None:
        with self._cond:
            self.closed = self._sent_close = True  # the peer is gone: no CLSE back
            self._cond.notify_all()

    def close(self) -> None:
        """Close our side (sends CLSE once); safe to call twice."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()
            if not self._sent_close:
                self._sent_close = True
                self.conn.send(A_CLSE, self.local_id, self.remote_id)
        self.conn.forget(self.local_id)


class _Connection:
    """One TCP link from an adb server: the CNXN handshake, then the streams it opens."""

    def __init__(self, device: FakeAdbd, sock: socket.socket) -> None:
        self.device, self.sock = device, sock
        self.max_payload = MAX_PAYLOAD
        self._send_lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1
        self._online = False
        self._token = b""

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        try:
            with self._send_lock:
                self.sock.sendall(pack_message(command, arg0, arg1, data))
        except OSError:
            self.shutdown()

    def forget(self, local_id: int) -> None:
        self._streams.pop(local_id, None)

    def serve(self) -> None:
        """Read messages until the link drops, dispatching each to its stream."""
        try:
            while True:
                command, arg0, arg1, length, _check, magic = _HEADER.unpack(_recv_exact(self.sock, 24))
                if magic != command ^ 0xFFFFFFFF or length > MAX_PAYLOAD:
                    break  # not ADB, or a corrupt header: drop the link like adbd does
                data = _recv_exact(self.sock, length) if length else b""
                self._dispatch(command, arg0, arg1, data)
        except (OSError, _StreamClosed):
            pass
        finally:
            self.shutdown()

    def _dispatch(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            self._close_streams()  # a new CNXN resets the link
            self.max_payload = min(arg1 or MAX_PAYLOAD, MAX_PAYLOAD)
            self._online = self.device.authorized_keys is None
            if self._online:
                self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.device.banner().encode())
            else:
                self._ask_auth()
            return
        if command == A_AUTH and not self._online:
            self._on_auth(arg0, data)
            return
        if not self._online:
            return  # adbd ignores everything before the handshake
        stream = self._streams.get(arg1)
        if command == A_OPEN:
            self._open(arg0, data.rstrip(b"\0").decode("utf-8", "surrogateescape"))
        elif stream is None:
            return
        elif command == A_OKAY:
            stream.on_okay()
        elif command == A_WRTE:
            stream.on_data(data)
        elif command == A_CLSE:
            stream.on_remote_close()
            self.forget(arg1)

    def _ask_auth(self) -> None:
        """Send a fresh random token for the host to sign (``AUTH TOKEN``)."""
        self._token = os.urandom(TOKEN_SIZE)
        self.send(A_AUTH, AUTH_TOKEN, 0, self._token)

    def _on_auth(self, kind: int, data: bytes) -> None:
        """A signature from a known key lets the host in; a bad one gets a new token; a public
        key is what the phone would show in its "Allow USB debugging?" prompt: nothing more
        happens until someone accepts it (``FakeAdbd.accept``), so the host stays
        ``unauthorized``."""
        if kind == AUTH_SIGNATURE:
            keys = self.device.authorized_keys or ()
            if any(_verify(key, self._token, data) for key in keys):
                self._online = True
                self.device._event("AUTH ok")
                self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.device.banner().encode())
            else:
                self.device._event("AUTH bad signature")
                self._ask_auth()
        elif kind == AUTH_RSAPUBLICKEY:
            self.device._event("AUTH prompt")
            self.device._prompt(self, data.rstrip(b"\0").decode("ascii", "replace"))

    def accepted(self) -> None:
        """The user accepted this link's key: the handshake completes (``CNXN``)."""
        self._online = True
        self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.device.banner().encode())

    def _open(self, remote_id: int, service: str) -> None:
        handler = self.device._service_handler(service)
        if handler is None:
            self.send(A_CLSE, 0, remote_id)  # a failed OPEN: the client prints "error: closed"
            return
        stream = _Stream(self, self._next_id, remote_id)
        self._streams[stream.local_id] = stream
        self._next_id += 1
        self.send(A_OKAY, stream.local_id, remote_id)
        self.device._start_thread(self._run_service, handler, stream)

    @staticmethod
    def _run_service(handler: Callable[[_Stream], None], stream: _Stream) -> None:
        try:
            handler(stream)
        except _StreamClosed:
            pass
        finally:
            stream.close()

    def _close_streams(self) -> None:
        for stream in list(self._streams.values()):
            stream.on_remote_close()
        self._streams.clear()

    def shutdown(self) -> None:
        """Drop the link: every stream ends and its processes are killed."""
        self._close_streams()
        with contextlib.suppress(OSError):  # already shut down
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class FakeAdbd:
    """A TEST DOUBLE of adbd serving one sandbox folder; ``start()``/``stop()`` or ``with``.

    Args:
        sandbox: the phone's storage: cwd and HOME of its shells, the only place sync may touch.
        model: the ``ro.product.model`` shown by ``adb devices -l`` and ``getprop``.
        host: the loopback address to listen on; the port is ephemeral (never 5555-5585, which
            the adb server would attach on its own as emulators).
        command_timeout: a shell command still running after this many seconds is killed (the
            double's own safety net: real adbd waits for ever).
        authorized_keys: the ``adbkey.pub`` lines of the hosts allowed in, as a phone with USB
            debugging remembers them: any other host is asked to sign a token (``AUTH``), sends
            its key for the "Allow USB debugging?" prompt and stays ``unauthorized`` until
            ``accept()``. None: no AUTH at all, like ``ro.adb.secure=0`` builds.

    Fault injection: set ``corrupt_pushes = N`` and the next N files pushed are stored with
    their first byte flipped, as a flaky cable or storage would; adb itself reports success.
    """

    def __init__(
        self,
        sandbox: Path,
        *,
        model: str = "OfaFakePhone",
        host: str = "127.0.0.1",
        command_timeout: float = 600.0,
        authorized_keys: Iterable[str] | None = None,
    ) -> None:
        self.sandbox = Path(sandbox).resolve()
        self.host = host
        self.command_timeout = command_timeout
        self.authorized_keys = None if authorized_keys is None else set(authorized_keys)
        self.prompts: list[str] = []  #: public keys shown in the "Allow USB debugging?" prompt
        self._waiting: list[tuple[_Connection, str]] = []
        self.properties = {
            "ro.product.model": model,
            "ro.product.name": "ofa_fake",
            "ro.product.device": "ofa_fake",
            "ro.product.cpu.abi": "arm64-v8a",
            "ro.build.version.sdk": "33",
        }
        self.events: list[str] = []  #: services opened and sync requests seen, in order
        self.corrupt_pushes = 0
        self.port = 0
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._threads: list[threading.Thread] = []
        # A private folder without spaces: bin/ (the fake ``getprop``, first on the shells' PATH)
        # and data/local/tmp, a link into the sandbox that mapped command lines name.
        self._root: Path | None = None

    @property
    def serial(self) -> str:
        """The serial the adb server will show: ``HOST:PORT``."""
        return f"{self.host}:{self.port}"

    def banner(self) -> str:
        """The CNXN banner: the device state, the product properties and the features."""
        keys = ("ro.product.name", "ro.product.model", "ro.product.device")
        return (
            "device::"
            + "".join(f"{k}={self.properties[k]};" for k in keys)
            + f"features={','.join(FEATURES)}"
        )

    def start(self) -> FakeAdbd:
        """Listen on an ephemeral port and serve connections in background threads."""
        self.sandbox.mkdir(parents=True, exist_ok=True)
        self._root = Path(tempfile.mkdtemp(prefix="fake-adbd-"))
        (self._root / "bin").mkdir()
        self._write_getprop(self._root / "bin")
        self._write_dumpsys(self._root / "bin")
        self.android_path(ANDROID_TMP).mkdir(parents=True, exist_ok=True)
        alias = self._root / ANDROID_TMP.lstrip("/")
        alias.parent.mkdir(parents=True)
        alias.symlink_to(self.android_path(ANDROID_TMP), target_is_directory=True)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((self.host, 0))
        listener.listen(8)
        self._listener, self.port = listener, listener.getsockname()[1]
        if 5555 <= self.port <= 5585:  # pragma: no cover - outside Linux's ephemeral range
            self.stop()
            raise RuntimeError(f"ephemeral port {self.port} collides with adb's emulator ports")
        self._start_thread(self._accept_loop, listener)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection, kill every command still running (a test
        bed must not leak processes; a phone would keep them until reboot), wait for the
        threads."""
        if self._listener is not None:
            with contextlib.suppress(OSError):  # shutdown() is what wakes the accept() call
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            connections, procs = list(self._connections), list(self._procs)
        for conn in connections:
            conn.shutdown()
        for proc in procs:
            _kill_group(proc)
        deadline = time.monotonic() + timeout
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> FakeAdbd:
        return self.start()

    def android_path(self, path: str) -> Path:
        """Where an Android path under ``/data/local/tmp`` lives on this host (in the sandbox)."""
        if not _ANDROID_TMP_WORD.match(path.encode()):
            raise ValueError(f"{path!r} is not under {ANDROID_TMP}, the only Android folder the double maps")
        return self.sandbox / path.lstrip("/")

    def _to_host(self) -> _Rewriter:
        """Rewrites ``/data/local/tmp`` in what goes to a command into its spaceless host alias."""
        assert self._root is not None
        alias = os.fsencode(self._root) + ANDROID_TMP.encode()
        return _Rewriter([(ANDROID_TMP.encode(), _ANDROID_TMP_WORD, alias)])

    def _to_phone(self) -> _Rewriter:
        """Rewrites the host's names of ``/data/local/tmp`` (alias and real) in what a command prints."""
        assert self._root is not None
        names = {os.fsencode(self._root) + ANDROID_TMP.encode(), os.fsencode(self.android_path(ANDROID_TMP))}
        return _Rewriter([(name, re.compile(re.escape(name)), ANDROID_TMP.encode()) for name in names])

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _start_thread(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="fake-adbd")
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return  # stop() shut the listener down
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, sock)
            with self._lock:
                self._connections.add(conn)
            self._start_thread(self._serve, conn)

    def _serve(self, conn: _Connection) -> None:
        try:
            conn.serve()
        finally:
            with self._lock:
                self._connections.discard(conn)

    def _prompt(self, conn: _Connection, public_key: str) -> None:
        with self._lock:
            self.prompts.append(public_key)
            self._waiting.append((conn, public_key))

    def accept(self) -> None:
        """Tap "Allow" on every pending prompt: remember the keys and let those hosts in."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
            self.authorized_keys = (self.authorized_keys or set()) | {key for _, key in waiting}
        for conn, _ in waiting:
            conn.accepted()

    def _event(self, text: str) -> None:
        with self._lock:
            self.events.append(text)

    # --- services -------------------------------------------------------------------------

    def _service_handler(self, service: str) -> Callable[[_Stream], None] | None:
        """What serves an OPEN: ``shell[,args]:CMD``, ``exec:CMD``, ``sync:``; else None."""
        self._event(f"OPEN {service}")
        name, _, command = service.partition(":")
        kind, *args = name.split(",")
        if kind == "shell":
            use_v2 = "v2" in args
            env = dict(a.split("=", 1) for a in args if a.startswith("TERM="))
            return lambda stream: self._shell(stream, command, v2=use_v2, extra_env=env)
        if kind == "exec":
            return lambda stream: self._shell(stream, command, v2=False, extra_env={})
        if name == "sync":
            return self._sync
        return None

    def _shell(self, stream: _Stream, command: str, *, v2: bool, extra_env: dict[str, str]) -> None:
        """Run ``command`` (an interactive ``sh`` if empty): v2 frames stdout/stderr/exit code,
        v1 and ``exec`` send raw stdout+stderr and no exit code. PTY requests run without one."""
        assert self._root is not None
        env = {**os.environ, **extra_env, "HOME": str(self.sandbox)}
        env["PATH"] = f"{self._root / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}"
        command = os.fsdecode(self._to_host().feed(os.fsencode(command), end=True))
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command] if command else ["/bin/sh"],
            cwd=self.sandbox,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if v2 else subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_hangup,
        )
        with self._lock:
            self._procs.add(proc)
        try:
            assert proc.stdout is not None and proc.stdin is not None
            outputs = [(proc.stdout, _STDOUT if v2 else None)]
            if v2:
                assert proc.stderr is not None
                outputs.append((proc.stderr, _STDERR))
            pumps = [
                threading.Thread(target=_pump, args=(pipe, stream, i, self._to_phone()), daemon=True)
                for pipe, i in outputs
            ]
            for thread in pumps:
                thread.start()
            self._start_thread(_feed_stdin, stream, proc, v2, self._to_host())
            deadline = time.monotonic() + self.command_timeout
            for thread in pumps:  # adbd waits for EOF on the pipes, then for the exit status
                thread.join(max(0.0, deadline - time.monotonic()))
            try:
                code = proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(proc)  # the double's safety net (see command_timeout)
                code = proc.wait(EXIT_WAIT_S)
            if v2:
                stream.write(_SHELL_HEADER.pack(_EXIT, 1) + bytes([code & 0xFF if code >= 0 else 128 - code]))
        finally:
            with self._lock:
                self._procs.discard(proc)

    def _sync(self, stream: _Stream) -> None:
        """The file-transfer service: STAT, LIST, SEND, RECV until QUIT or an error."""
        handlers = {b"STAT": self._sync_stat, b"LIST": self._sync_list, b"SEND": self._sync_send}
        handlers[b"RECV"] = self._sync_recv
        while True:
            ident, length = _SYNC_HEADER.unpack(stream.read_exact(8))
            self._event(f"SYNC {ident.decode('ascii', 'replace')}")
            if ident == b"QUIT":
                return
            handler = handlers.get(ident)
            if handler is None or length > SYNC_PATH_MAX:
                _sync_fail(stream, f"unknown or oversized sync request {ident!r}")
                return
            if not handler(stream, stream.read_exact(length).decode("utf-8", "surrogateescape")):
                return

    def _inside(self, path: str) -> Path | None:
        """``path`` (an Android one under ``/data/local/tmp``, a relative one from the sandbox,
        or a host one) if it resolves inside the sandbox."""
        full = self.android_path(path) if _ANDROID_TMP_WORD.match(path.encode()) else self.sandbox / path
        real = Path(os.path.realpath(full))
        return full if real == self.sandbox or self.sandbox in real.parents else None

    def _confined(self, stream: _Stream, path: str) -> Path | None:
        """``path`` if inside the sandbox, else None after a FAIL (ends the sync session)."""
        full = self._inside(path)
        if full is None:
            _sync_fail(stream, f"{path}: outside the device sandbox (test double)")
        return full

    # STAT and LIST have no FAIL answer (the 29.x client aborts on one): a path outside the
    # sandbox looks missing, as an unreadable path does on a phone.

    def _sync_stat(self, stream: _Stream, path: str) -> bool:
        full = self._inside(path)
        try:
            st = os.lstat(full or "")
            fields = (st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime))
        except OSError:
            fields = (0, 0, 0)  # adbd answers an all-zero STAT for a missing file
        stream.write(struct.pack("<4s3I", b"STAT", *fields))
        return True

    def _sync_list(self, stream: _Stream, path: str) -> bool:
        full = self._inside(path)
        entries: list[tuple[str, Path]] = []  # adbd ends an unreadable listing with DONE alone
        if full is not None:
            with contextlib.suppress(OSError):
                entries = [(name, full / name) for name in (".", "..", *sorted(os.listdir(full)))]
        out = bytearray()
        for name, item in entries:
            try:
                st = os.lstat(item)
            except OSError:
                continue
            raw = os.fsencode(name)
            out += struct.pack(
                "<4s4I", b"DENT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime), len(raw)
            )
            out += raw
        stream.write(bytes(out) + struct.pack("<4s4I", b"DONE", 0, 0, 0, 0))
        return True

    def _sync_send(self, stream: _Stream, spec: str) -> bool:
        path, _, mode_text = spec.rpartition(",")
        full = self._confined(stream, path)
        handle = None
        if full is not None:
            try:
                mode = int(mode_text) & 0o777
                if full.is_file() and not full.is_symlink():
                    full.unlink()  # like adbd: a busy executable can be replaced
                full.parent.mkdir(parents=True, exist_ok=True)
                handle = open(full, "wb")  # noqa: SIM115 - closed below on every path
                os.chmod(full, mode)
            except (OSError, ValueError) as err:
                _sync_fail(stream, f"couldn't create file: {err}")
        try:
            while True:  # without a file, drain until DONE so the client reads our FAIL
                ident, length = _SYNC_HEADER.unpack(stream.read_exact(8))
                if ident == b"DONE":
                    break
                if ident != b"DATA" or length > SYNC_DATA_MAX:
                    if handle is not None:
                        _sync_fail(stream, "invalid data message")
                    return False
                chunk = stream.read_exact(length)
                if handle is not None:
                    if handle.tell() == 0 and chunk and self.corrupt_pushes > 0:
                        self.corrupt_pushes -= 1
                        chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    handle.write(chunk)
        finally:
            if handle is not None:
                handle.close()
        if handle is None:
            return False
        assert full is not None
        os.utime(full, (length, length))
        stream.write(_SYNC_HEADER.pack(b"OKAY", 0))
        return True

    def _sync_recv(self, stream: _Stream, path: str) -> bool:
        full = self._confined(stream, path)
        if full is None:
            return False
        try:
            handle = open(full, "rb")  # noqa: SIM115 - a with block would hide the FAIL path
        except OSError as err:
            _sync_fail(stream, err.strerror or str(err))
            return False
        out = bytearray()  # several DATA chunks per WRTE, as adbd's socket buffering does
        with handle:
            while chunk := handle.read(SYNC_DATA_MAX):
                out += _SYNC_HEADER.pack(b"DATA", len(chunk)) + chunk
                if len(out) >= stream.conn.max_payload:
                    stream.write(bytes(out))
                    out.clear()
        stream.write(bytes(out) + _SYNC_HEADER.pack(b"DONE", 0))
        return True

    def set_thermal(self, *statuses: int) -> None:
        """The thermal statuses ``dumpsys thermalservice`` reports, one per call, the last one
        from then on (a phone cooling down: ``set_thermal(3, 2, 1)``). Call after ``start``."""
        assert self._root is not None, "start the phone first"
        (self._root / "thermal").write_text(" ".join(str(int(s)) for s in statuses) + "\n")

    def _write_dumpsys(self, folder: Path) -> None:
        """A ``dumpsys`` answering ``thermalservice`` from the statuses ``set_thermal`` left."""
        script = folder / "dumpsys"
        script.write_text(_DUMPSYS.replace("STATE", shlex.quote(str(folder.parent / "thermal"))))
        script.chmod(0o755)

    def _write_getprop(self, folder: Path) -> None:
        """A ``getprop`` script answering from ``self.properties``."""
        props = sorted(self.properties.items())
        listing = " ".join(shlex.quote(f"[{k}]: [{v}]") for k, v in props)
        lines = [
            "#!/bin/sh",
            f"if [ $# -eq 0 ]; then printf '%s\\n' {listing}; exit 0; fi",
            'case "$1" in',
            *(f"  {shlex.quote(k)}) echo {shlex.quote(v)} ;;" for k, v in props),
            "  *) echo ;;",
            "esac",
        ]
        script = folder / "getprop"
        script.write_text("\n".join(lines) + "\n")
        script.chmod(0o755)


_DUMPSYS = r"""#!/bin/sh
# A TEST DOUBLE of Android's dumpsys: only `dumpsys thermalservice`, laid out as AOSP's
# ThermalManagerService dumps it (the status and temperatures are the test's, see set_thermal).
if [ "$1" != "thermalservice" ]; then echo "Can't find service: $1"; exit 0; fi
set -- $(cat STATE 2>/dev/null || echo 0)
status=$1
if [ $# -gt 1 ]; then shift; echo "$*" > STATE; fi
temp=$((35 + 8 * status))
cat <<EOF
IsStatusOverride: false
ThermalEventListeners:
	callbacks: 0
	killed: false
	broadcasts count: -1
ThermalStatusListeners:
	callbacks: 1
	killed: false
	broadcasts count: -1
Thermal Status: $status
Cached temperatures:
	Temperature{mValue=99.0, mType=0, mName=cpu0, mStatus=4}
HAL Ready: true
HAL connection:
	ThermalHAL 2.0 connected: yes
Current temperatures from HAL:
	Temperature{mValue=$temp.5, mType=0, mName=cpu0, mStatus=$status}
	Temperature{mValue=31.25, mType=3, mName=VIRTUAL-SKIN, mStatus=0}
Current cooling devices from HAL:
	CoolingDevice{mValue=0, mType=2, mName=cpu0}
EOF
"""


def _verify(public_key: str, token: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``token`` signed by the key of an ``adbkey.pub`` line (base64 of
    Android's RSA public key structure, then a comment): PKCS#1 v1.5 over a SHA-1 digest."""
    try:
        raw = base64.b64decode(public_key.split()[0], validate=True)
        words, _n0inv, n_le, _rr, exponent = _ANDROID_PUBKEY.unpack(raw[: _ANDROID_PUBKEY.size])
    except (ValueError, IndexError, struct.error):
        return False
    modulus = int.from_bytes(n_le[: words * 4], "little")
    size = (modulus.bit_length() + 7) // 8
    if len(signature) != size or not modulus:
        return False
    message = pow(int.from_bytes(signature, "big"), exponent, modulus).to_bytes(size, "big")
    digest = _SHA1_DIGEST_INFO + token
    padding = size - len(digest) - 3
    return padding >= 8 and message == b"\x00\x01" + b"\xff" * padding + b"\x00" + digest


def _sync_fail(stream: _Stream, message: str) -> None:
    raw = message.encode()
    stream.write(_SYNC_HEADER.pack(b"FAIL", len(raw)) + raw)


class _Rewriter:
    """Replaces paths in a byte stream that comes in chunks: a chunk's tail that may be the start
    of a path is held back until the next chunk (or the end) shows whether it is one."""

    def __init__(self, rules: list[tuple[bytes, re.Pattern[bytes], bytes]]) -> None:
        self._rules = rules  # (the literal a match starts with, the pattern, its replacement)
        self._held = b""
        self._prev = b""  # the last byte let through: what a pattern's look-behind may need

    def feed(self, data: bytes, *, end: bool = False) -> bytes:
        """What of the stream so far can be passed on, rewritten; ``end`` flushes the rest."""
        data = self._held + data
        keep = 0 if end else max(_overlap(data, literal) for literal, _, _ in self._rules)
        ready, self._held = data[: len(data) - keep], data[len(data) - keep :]
        if not ready:
            return b""
        out = self._prev + ready  # no match can start in _prev: it would have been held back
        for _, pattern, replacement in self._rules:
            out = pattern.sub(replacement, out)
        out, self._prev = out[len(self._prev) :], ready[-1:]
        return out


def _overlap(data: bytes, literal: bytes) -> int:
    """The length of the longest end of ``data`` that begins (or is) ``literal``."""
    return next((k for k in range(min(len(literal), len(data)), 0, -1) if data.endswith(literal[:k])), 0)


def _pump(pipe: IO[bytes], stream: _Stream, packet_id: int | None, rewriter: _Rewriter) -> None:
    """Copy a child's output pipe to the stream (host paths of ``/data/local/tmp`` mapped back),
    framed as shell-protocol packets if v2. Once the stream is gone the pipe is closed, as adbd
    does, so a child that survives its SIGHUP and keeps writing gets EPIPE, not a full pipe."""

    def send(data: bytes) -> None:
        if data:
            stream.write(data if packet_id is None else _SHELL_HEADER.pack(packet_id, len(data)) + data)

    try:
        while chunk := pipe.read1(32 * 1024):  # type: ignore[attr-defined]
            send(rewriter.feed(chunk))
        send(rewriter.feed(b"", end=True))
    except (_StreamClosed, OSError, ValueError):
        _close_quietly(pipe)


def _next_input(stream: _Stream, v2: bool) -> tuple[int, bytes]:
    """The next (packet id, data) from the client: v2 frames them, v1 input is all stdin."""
    if v2:
        packet_id, length = _SHELL_HEADER.unpack(stream.read_exact(_SHELL_HEADER.size))
        return packet_id, stream.read_exact(length)
    data = stream.read()
    if not data:
        raise _StreamClosed("the client closed the stream")
    return _STDIN, data


def _feed_stdin(stream: _Stream, proc: subprocess.Popen[bytes], v2: bool, rewriter: _Rewriter) -> None:
    """Copy the client's input (``/data/local/tmp`` mapped) to the child's stdin until the stream
    closes; if the child still runs then (the client went away), send it SIGHUP, as adbd does:
    only the child, not its process group, and nothing stronger. What ignores SIGHUP or was
    started by the child keeps running, as on a phone."""
    stdin = proc.stdin
    assert stdin is not None
    try:
        while True:
            packet_id, data = _next_input(stream, v2)
            if packet_id in (_STDIN, _CLOSE_STDIN) and not stdin.closed:
                try:
                    stdin.write(rewriter.feed(data, end=packet_id == _CLOSE_STDIN))
                    stdin.flush()
                except (BrokenPipeError, ValueError):
                    _close_quietly(stdin)
            if packet_id == _CLOSE_STDIN:
                _close_quietly(stdin)
            # window-size packets (id 5) only matter to a PTY, which the double does not make
    except _StreamClosed:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGHUP)
    finally:
        _close_quietly(stdin)


def _close_quietly(pipe: IO[bytes]) -> None:
    with contextlib.suppress(OSError):  # a child that exited leaves a broken pipe behind
        pipe.close()


def _default_hangup() -> None:
    """In the child, before exec: SIGHUP back to its default, as a phone's shell starts with it
    (run under nohup, the double's children would otherwise inherit it ignored, and a shell cannot
    trap a signal ignored on entry)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's whole process group (it leads a session of its own): only the
    double's own safety nets use this (``command_timeout``, ``stop()``), never a closed stream."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
