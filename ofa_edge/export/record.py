"""The export record: ``MODEL.export.json`` beside an exported model, saying what the file is.

``ofa-edge export`` writes it (supernet, arch, precision, sha256, the checks passed) and
``ofa-edge push`` reads it to find the latency table to compare a measurement with, so the
format lives here, with the stage that owns it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ofa_edge.errors import ConfigError
from ofa_edge.files import write_json

#: An export writes ``FILE`` plus ``FILE`` + this suffix.
EXPORT_RECORD_SUFFIX = ".export.json"
#: 2: the lowered model's checks are ``agreement``, ``top1``... (1: ``int8_agreement``...).
RECORD_VERSION = 2
RECORD_KIND = "ofa-edge/export"


def record_path(model: str | Path) -> Path:
    """Where the export record of ``model`` is."""
    model = Path(model)
    return model.with_name(model.name + EXPORT_RECORD_SUFFIX)


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` (``ExportReport.to_dict()``) as the JSON document ``export_record`` reads."""
    write_json(path, record)


def export_record(model: Path) -> dict[str, Any] | None:
    """The export record beside ``model``, if there is one."""
    path = record_path(model)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"export record {path} is unreadable ({err})", hint="export the model again, or delete it"
        ) from None
