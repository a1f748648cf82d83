"""All CLI printing: results to stdout (text, or one JSON document with --json), errors to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from ofa_edge import __version__
from ofa_edge.errors import OfaEdgeError


class Output:
    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode

    def result(self, kind: str, data: dict[str, Any], text: str) -> None:
        """Print a command's result: ``text`` for people, or a versioned JSON document."""
        if self.json_mode:
            doc = {"schema": f"ofa-edge/{kind}/1", "ofa_edge_version": __version__, **data}
            print(json.dumps(doc))
        else:
            print(text)

    def error(self, err: OfaEdgeError | str) -> None:
        message = str(err)
        print(f"ofa-edge: error: {message}", file=sys.stderr)
        if self.json_mode:
            fields: dict[str, str | None] = {"message": message}
            if isinstance(err, OfaEdgeError):
                fields = {"reference": err.reference, "message": err.message, "hint": err.hint}
            self.result("error", {"error": fields}, "")

    def counter(self, desc: str, unit: str) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` callback drawing a bar with ETA on stderr (silent under
        --json); the bar appears on the first call and closes when ``done`` reaches ``total``."""
        if self.json_mode:
            return lambda done, total: None
        bar: Any = None

        def update(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(
                    desc=desc, unit=unit, total=total, initial=done, file=sys.stderr, dynamic_ncols=True
                )
            bar.total = total
            bar.update(done - bar.n)
            if done >= total:
                bar.close()

        return update
