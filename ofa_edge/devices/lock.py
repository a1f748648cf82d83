"""The lock on a device: while a command measures there, no other command or host does.

It lives on the device, in the agent's workdir, so every host that reaches the device sees it:
``lock.json`` (who holds it: owner, host, pid, command, when taken, a token) and
``lock.expires`` (``EPOCH TOKEN``, on the device's clock, so hosts with different clocks
agree). Every change is one POSIX ``sh`` script run through ``Transport.run`` (SSH, ``adb
shell``, a local subprocess: phones without Python too) inside a ``mkdir`` mutex, so taking,
refreshing, taking over and releasing are atomic. A holder refreshes the expiry from a thread
while it works; a lock whose expiry passed, or whose holder was a process of this host that is
gone, is taken over, and the taker says whose it was.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import math
import os
import shlex
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.devices.transport import Transport
from ofa_edge.devices.transports import open_transport
from ofa_edge.errors import DeviceBusy, DeviceError

#: Desktop seconds a lock outlives its holder's last refresh (times the device's slowdown).
LOCK_TTL_S = 120.0
#: Seconds between two tries of a waiting command (a try is one short command on the device).
POLL_S = 1.0

# $1 op (take|refresh|release|show)  $2 workdir  $3 token  $4 ttl (s)  $5 holder JSON
# $6 a holder's token that may be taken over even before it expires (its process is gone).
# Prints "STATUS NOW EXPIRES" (device epoch seconds), then the holder it found, if any.
_SCRIPT = r"""
op=$1 w=$2 token=$3 ttl=$4 holder=$5 steal=$6
case $w in "~") w=$HOME ;; "~/"*) w=$HOME/${w#"~/"} ;; esac
mkdir -p "$w" || exit 3
m=$w/lock.mutex f=$w/lock.json e=$w/lock.expires
i=0
until mkdir "$m" 2>/dev/null; do
  # held for milliseconds: one older than a minute was left by a killed call
  [ -n "$(find "$m" -maxdepth 0 -mmin +1 2>/dev/null)" ] && rmdir "$m" 2>/dev/null
  i=$((i + 1)); [ "$i" -gt 60 ] && { echo "lock mutex $m stays taken" >&2; exit 4; }
  sleep 1
done
trap 'rmdir "$m"' EXIT
trap 'exit 1' HUP INT TERM
now=$(date +%s) exp=0 cur=
[ -f "$e" ] && read -r exp cur < "$e"
[ -f "$f" ] || cur=
status=$op
if [ "$op" = take ]; then
  if [ -z "$cur" ] || [ "$cur" = "$token" ]; then status=TAKEN
  elif [ "$exp" -le "$now" ] || [ "$cur" = "$steal" ]; then status=TOOK
  else status=HELD; fi
elif [ "$op" != show ] && [ "$cur" != "$token" ]; then status=LOST; fi
echo "$status $now $exp"
[ -n "$cur" ] && [ "$cur" != "$token" ] && cat "$f"
case $status in
  TAKEN|TOOK) printf '%s\n' "$holder" > "$f.tmp" && mv "$f.tmp" "$f" && echo "$((now + ttl)) $token" > "$e" ;;
  refresh) echo "$((now + ttl)) $token" > "$e" ;;
  release) rm -f "$f" "$e" ;;
esac
"""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a device's lock, as its ``lock.json`` says; ``expires`` is on this host's clock."""

    owner: str
    host: str
    pid: int
    command: str
    acquired: str
    expires: str
    stale: bool  # its expiry passed: the next command takes it over
    token: str

    def describe(self) -> str:
        """One line for people: who, what, since when, until when."""
        return (
            f"{self.owner} (pid {self.pid}) running `{self.command}` since {self.acquired}, "
            f"{'expired' if self.stale else 'expires'} {self.expires}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The holder as ``devices check --json`` shows it (the token stays private)."""
        return {k: v for k, v in asdict(self).items() if k != "token"}

    def gone_from(self, hostname: str) -> bool:
        """Whether the holder was a process of ``hostname`` (this host) that no longer runs."""
        if self.host != hostname:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class DeviceLock:
    """One command's lock on one device: ``acquire`` waits (bounded by the device's
    ``lock_timeout``) while another holds it, then refreshes it from a thread until ``release``.
    It opens a transport of its own unless given one, so the refresh never shares a connection."""

    def __init__(
        self,
        spec: DeviceSpec,
        transport: Transport | None = None,
        *,
        command: str | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self._transport = transport
        self._owns_transport = transport is None
        self.token = uuid.uuid4().hex
        self.hostname = socket.gethostname()
        self.command = command or shlex.join(sys.argv)[:300]
        self.say = say or _stderr
        self.ttl = math.ceil(spec.wait(LOCK_TTL_S))
        self.held = False
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = open_transport(self.spec)
        return self._transport

    def _holder_json(self) -> str:
        return json.dumps(
            {
                "owner": f"{getpass.getuser()}@{self.hostname}",
                "host": self.hostname,
                "pid": os.getpid(),
                "command": self.command,
                "acquired": _now(),
                "token": self.token,
            }
        )

    def _call(self, op: str, steal: str = "") -> tuple[str, LockHolder | None]:
        """Run the lock script's ``op``; its status and the other holder it found, if any."""
        argv = ["sh", "-c", _SCRIPT, "ofa-edge-lock", op, self.spec.workdir, self.token, str(self.ttl)]
        res = self.transport.run([*argv, self._holder_json() if op == "take" else "", steal], timeout=90)
        head, _, rest = res.stdout.partition("\n")
        try:
            status, now, expires = head.split()
            found = json.loads(rest) if rest.strip() else None
        except ValueError:
            raise DeviceError(
                f"{self.spec.name}: the device lock answered {res.stdout.strip()[:200]!r}",
                hint=f"check that {self.spec.workdir}/lock.json is a JSON file, or remove it",
            ) from None
        if not isinstance(found, dict):
            return status, None
        left = int(expires) - int(now)
        return status, LockHolder(
            owner=str(found.get("owner")),
            host=str(found.get("host")),
            pid=int(found.get("pid", 0)),
            command=str(found.get("command")),
            acquired=str(found.get("acquired")),
            expires=(datetime.now(UTC) + timedelta(seconds=left)).isoformat(timespec="seconds"),
            stale=left <= 0,
            token=str(found.get("token")),
        )

    def holder(self) -> LockHolder | None:
        """Who holds the device's lock now (None: nobody); takes nothing."""
        return self._call("show")[1]

    def acquire(self) -> None:
        """Take the lock, waiting while another command holds it: says once who holds it, and
        says whose stale lock it took over; ``DeviceBusy`` after ``spec.wait(lock_timeout)``."""
        if self.held:
            return
        timeout = self.spec.wait(self.spec.lock_timeout)
        deadline = time.monotonic() + timeout
        steal, told = "", ""
        while True:
            status, holder = self._call("take", steal)
            if status in ("TAKEN", "TOOK"):
                break
            assert holder is not None
            if holder.gone_from(self.hostname):
                steal = holder.token  # its process is gone: no need to wait for the expiry
                continue
            if time.monotonic() >= deadline:
                raise DeviceBusy(
                    f"{self.spec.name} is busy: {holder.describe()}; waited {timeout:g} s",
                    hint="wait for that command to end, or raise --lock-timeout (inventory: lock_timeout); "
                    f"the lock of a holder that died expires by itself within {self.ttl} s",
                    holder=holder.to_dict(),
                )
            if told != holder.token:
                told = holder.token
                self.say(f"{self.spec.name}: busy: {holder.describe()}; waiting up to {timeout:g} s")
            time.sleep(min(POLL_S, max(deadline - time.monotonic(), 0.0)))
        if status == "TOOK" and holder is not None:
            why = "its process is gone" if holder.token == steal else "it expired"
            self.say(f"{self.spec.name}: took over the lock of {holder.describe()} ({why})")
        self.held = True
        self._stop.clear()
        self._refresher = threading.Thread(target=self._refresh, name=f"lock {self.spec.name}", daemon=True)
        self._refresher.start()

    def _refresh(self) -> None:
        """Extend the expiry every quarter of its life while held; a device that does not answer
        for a moment is tried again at the next turn."""
        while not self._stop.wait(self.ttl / 4):
            with contextlib.suppress(DeviceError):
                status, holder = self._call("refresh")
                if status == "LOST":
                    owner = holder.describe() if holder else "nobody"
                    self.say(f"{self.spec.name}: lost the device lock (now: {owner}); measuring on")
                    return

    def release(self) -> None:
        """Stop refreshing and remove the lock if it is still ours; safe to call twice."""
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
            self._refresher = None
        try:
            if self.held:
                with contextlib.suppress(DeviceError):
                    self._call("release")
        finally:
            self.held = False
            if self._owns_transport and self._transport is not None:
                self._transport.close()
                self._transport = None

    def break_lock(self) -> LockHolder | None:
        """Remove another command's lock now (its holder died on another host and its expiry is
        far off): the holder removed, or None if the device was not locked. A holder still alive
        says at its next refresh that it lost the lock."""
        holder = self.holder()
        if holder is None:
            return None
        status, other = self._call("take", steal=holder.token)
        if status not in ("TAKEN", "TOOK"):
            raise DeviceBusy(
                f"{self.spec.name}: the lock changed hands while it was being removed "
                f"(now: {other.describe() if other else 'unknown'})",
                hint=f"run `ofa-edge devices unlock {self.spec.name}` again if that holder is gone too",
            )
        self.held = True  # ours for the moment it takes to remove it
        self.release()
        return holder

    def __enter__(self) -> DeviceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
