"""The reference model every timing is relative to: a supernet's smallest subnet, cached by content.

``ofa_edge.measure.timing`` divides each model's time by the reference's at the same moment; a
latency table records which reference (its resolution) and its level, so later measurements
(``lut validate``, ``push --verify``) time against the same file.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from ofa_edge.convert.formats import EXPORT_LOCK
from ofa_edge.files import cache_dir, copy_atomic
from ofa_edge.measure.models import export_subnets, tool_versions
from ofa_edge.supernet.family import FamilySpec


def reference_model(
    spec: FamilySpec, resolution: int, fmt: str = "onnx", precision: str = "fp32"
) -> tuple[Path, str]:
    """The reference for tables of ``spec``: its smallest subnet at ``resolution``, cached.

    Returns the file and a description to record in the table.
    """
    arch = spec.space.min_arch(resolution)
    describe = f"min subnet @ {resolution}px ({fmt} {precision})"
    ident = f"reference|{json.dumps(spec.to_dict(), sort_keys=True)}|{arch.to_json()}"
    ident += f"|{fmt}|{precision}|{tool_versions(fmt, precision)}"
    path = cache_dir() / "micro" / f"reference-{hashlib.sha256(ident.encode()).hexdigest()[:20]}.{fmt}"
    # A fleet's devices ask at once: checked and made under one lock, so the file is made once
    # and never replaced (exports are not byte-stable) while another device hashes and sends it.
    with EXPORT_LOCK:
        if not path.is_file():
            with tempfile.TemporaryDirectory() as tmp:
                (made,) = export_subnets(spec, [arch], Path(tmp), fmt, precision)
                path.parent.mkdir(parents=True, exist_ok=True)
                copy_atomic(made, path)  # never a part of it in the cache, whatever the filesystems
    return path, describe
