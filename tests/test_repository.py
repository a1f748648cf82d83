"""The repository stands alone: nothing the project runs reads files from outside its clone."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT

#: A path built to a folder beside the clone (``../shared``, ``ROOT.parent / "shared"``, ...).
OUTSIDE = re.compile(r"""(\.\./shared|(parent|parents\[\d\])\s*/\s*["']shared["'])""")


def test_no_code_or_test_reads_a_folder_beside_the_clone() -> None:
    """A user's fresh clone has no ../shared beside it (.ci/run runs the suite in such a clone)."""
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for folder in ("ofa_edge", "device_agents", "tests", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE.search(line) and not line.lstrip().startswith("#") and path != Path(__file__)
    ]
    assert not offenders, "\n".join(offenders)
