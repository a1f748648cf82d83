"""Small file helpers every stage shares (no heavy imports).

Every file ofa-edge writes for later runs (checkpoints, tables, caches, downloads, manifests) goes
through ``atomic_path``: a kill at any instant leaves the old file or the new one, never a part,
and two processes writing one file each use their own temp file, so they cannot clobber each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platformdirs


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (model files and checkpoints can be large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to the disk; some systems refuse (ignored)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temp path of this writer's own beside ``target`` (``NAME.<random>.tmp`` + ``suffix``, for
    libraries that want an extension), created empty; write it in the block. On a clean exit it
    is fsynced and moved onto ``target`` in one step; on an error it is removed.

    The temp name never ends like ``target``, so globs for finished files do not see it.
    """
    target = Path(target)
    while True:
        tmp = target.with_name(f"{target.name}.{secrets.token_hex(6)}.tmp{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


def write_atomic(target: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``target`` through ``atomic_path``."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def write_json(target: str | Path, doc: Any) -> None:
    """``doc`` as indented JSON (anything else as its ``str``), through ``write_atomic``."""
    write_atomic(target, json.dumps(doc, indent=1, default=str) + "\n")


def save_figure(fig: Any, target: str | Path) -> None:
    """Save a matplotlib figure through ``atomic_path`` (the temp name keeps ``target``'s
    extension, from which matplotlib takes the format)."""
    target = Path(target)
    with atomic_path(target, suffix=target.suffix) as tmp:
        fig.savefig(tmp, dpi=120)


def copy_atomic(source: str | Path, target: str | Path) -> None:
    """Make ``target`` a copy of ``source`` in one step (a hard link where the filesystem has
    them, no bytes copied; else a byte copy); ``target`` is never missing or partial meanwhile."""
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def cache_dir() -> Path:
    """ofa-edge's per-user cache (``$OFA_EDGE_CACHE``, else platformdirs' cache dir): downloaded
    supernets, decoded datasets, model files written for timing."""
    root = os.environ.get("OFA_EDGE_CACHE") or platformdirs.user_cache_dir("ofa-edge")
    return Path(root)
