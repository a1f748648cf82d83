"""All CLI printing: results to stdout (text, or one JSON document with --json), errors to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from ofa_edge import __version__
from ofa_edge.errors import OfaEdgeError

T = TypeVar("T")


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
            fields = {"message": message}
            if isinstance(err, OfaEdgeError):
                fields = {"reference": err.reference, "message": err.message, "hint": err.hint}
            self.result("error", {"error": fields}, "")

    def bar(self, **kwargs: Any) -> Any:
        """A manually advanced progress bar with ETA on stderr (None under --json)."""
        if self.json_mode:
            return None
        from tqdm import tqdm

        return tqdm(file=sys.stderr, dynamic_ncols=True, **kwargs)

    def progress(self, items: Iterable[T], desc: str = "") -> Iterator[T]:
        """A progress bar with ETA on stderr, or nothing under --json."""
        if self.json_mode:
            return iter(items)
        from tqdm import tqdm

        return iter(tqdm(items, desc=desc, file=sys.stderr, dynamic_ncols=True))
