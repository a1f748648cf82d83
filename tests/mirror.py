"""Loopback HTTP servers standing in for MIT's file host (``OFA_EDGE_MIRROR``) and the Hugging Face hub."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def serving(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 while the block runs: its base URL."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


#: The commit the loopback hub reports for every revision.
HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@contextmanager
def serving_hub(files: dict[str, bytes]) -> Iterator[tuple[str, list[str]]]:
    """A loopback stand-in for the Hugging Face hub's ``/{repo}/resolve/{revision}/{file}`` URLs,
    serving ``files`` (keyed ``"{repo}/{file}"``) with the headers huggingface_hub reads (commit,
    ETag, size): its endpoint URL (for ``HF_ENDPOINT``) and the list of request paths it served."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self, body: bool) -> None:
            hits.append(self.path)
            repo_file = self.path.split("?")[0].lstrip("/").split("/resolve/", 1)
            key = repo_file[0] + "/" + repo_file[1].split("/", 1)[-1] if len(repo_file) == 2 else ""
            data = files.get(key)
            if data is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("X-Repo-Commit", HUB_COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_HEAD(self) -> None:
            self._reply(body=False)

        def do_GET(self) -> None:
            self._reply(body=True)

        def log_message(self, *args: Any) -> None:
            pass

    hits: list[str] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
