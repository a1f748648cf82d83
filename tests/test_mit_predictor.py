"""MIT's accuracy predictor by name: the w1.2 tutorial's ``acc_predictor.pth``, as MIT's code saves
it, predicts through ofa-edge what MIT's code predicts; the registry fetches it from a (loopback)
mirror on first use with its sha256 recorded; ``search`` on MIT's w1.2 supernet then needs no
``--predictor``; MIT's Note10 tables import by name.

The predictor is MIT's tutorial class with random weights (MIT's file was not fetched here).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ofa_edge.accuracy.predictor import TUTORIAL_RESOLUTIONS, load_predictor, predictor_for
from ofa_edge.errors import CheckpointError, ConfigError
from ofa_edge.files import cache_dir
from ofa_edge.supernet.registry import get_supernet_info
from ofa_edge.supernet.space import ArchConfig
from ofa_edge.testing.mit_reference import import_mit
from tests.mirror import serving
from tests.test_cli import error_line, run
from tests.test_cli_commands import ok
from tests.test_registry import _closed_port

W12 = "ofa_mbv3_d234_e346_k357_w1.2"
SPACE = get_supernet_info(W12).spec.space
tutorial = import_mit("ofa.tutorial.accuracy_predictor")


def mit_predictor(seed: int) -> Any:
    """MIT's tutorial predictor with random weights; its output bias is moved off zero, so a
    dropped bias shows."""
    torch.manual_seed(seed)
    predictor = tutorial.AccuracyPredictor(pretrained=False, device="cpu")
    with torch.no_grad():
        predictor.model[-1].bias.fill_(0.8)
    return predictor


def save_as_mit(predictor: Any, path: Path) -> Path:
    """The state dict saved as MIT's ``acc_predictor.pth`` is: torch's legacy (non-zip) format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(predictor.model.state_dict(), path, _use_new_zipfile_serialization=False)
    return path


def mit_scores(predictor: Any, archs: list[ArchConfig]) -> np.ndarray:
    """What MIT's code predicts: its ``predict_accuracy`` (``spec2feats``, then its network)."""
    specs = [{"ks": list(a.ks), "e": [int(v) for v in a.e], "d": list(a.d), "r": [a.r]} for a in archs]
    return predictor.predict_accuracy(specs)[:, 0].numpy()


def random_archs(n: int, seed: int) -> list[ArchConfig]:
    """``n`` random subnets of the w1.2 space at the tutorial's resolutions."""
    rng = random.Random(seed)
    return [
        ArchConfig(a.ks, a.e, a.d, rng.choice(TUTORIAL_RESOLUTIONS))
        for a in (SPACE.sample(rng) for _ in range(n))
    ]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Any]]:
    """MIT's file host on loopback with a tutorial predictor at ``acc_predictor.pth``: (its URL,
    the served file, MIT's predictor object)."""
    root = tmp_path_factory.mktemp("mirror")
    predictor = mit_predictor(0)
    served = save_as_mit(predictor, root / "acc_predictor.pth")
    with serving(root) as url:
        yield url, served, predictor


def test_mits_file_predicts_what_mits_code_predicts(tmp_path: Path) -> None:
    predictor = mit_predictor(1)
    path = save_as_mit(predictor, tmp_path / "acc_predictor.pth")
    archs = random_archs(100, seed=0)
    assert {a.r for a in archs} == set(TUTORIAL_RESOLUTIONS)
    expected = mit_scores(predictor, archs)
    loaded = load_predictor(path)
    assert loaded.supernet is None and loaded.predictor.encoder.resolutions == TUTORIAL_RESOLUTIONS
    got = loaded.predictor.predict(archs)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert np.std(expected) > 1e-3  # the comparison is not between constants
    # Resolutions it was not trained on (the w1.2 space's 128-156, or between 16-px steps) are refused.
    with pytest.raises(ConfigError, match="outside the predictor's space"):
        loaded.predictor.predict([ArchConfig(a.ks, a.e, a.d, 168) for a in archs[:1]])
    # A Linear stack over another feature count is not MIT's tutorial predictor.
    torch.save({"0.weight": torch.zeros(400, 100), "0.bias": torch.zeros(400)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not MIT's tutorial accuracy predictor"):
        load_predictor(tmp_path / "other.pth")


def test_the_registry_downloads_it_once_and_checks_its_hash(
    mirror: tuple[str, Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served, mit = mirror
    monkeypatch.setenv("OFA_EDGE_MIRROR", url)
    archs = random_archs(20, seed=1)
    np.testing.assert_allclose(predictor_for(W12, SPACE).predict(archs), mit_scores(mit, archs), atol=1e-5)
    cached = cache_dir() / "predictors" / f"{W12}.pth"
    assert cached.read_bytes() == served.read_bytes()
    record = cached.with_name(cached.name + ".sha256")
    assert record.read_text().strip() == hashlib.sha256(served.read_bytes()).hexdigest()
    monkeypatch.setenv(
        "OFA_EDGE_MIRROR", f"http://127.0.0.1:{_closed_port()}"
    )  # offline: the cache serves it
    predictor_for(W12, SPACE)
    save_as_mit(mit_predictor(2), cached)  # another predictor in its place
    with pytest.raises(CheckpointError, match=f"cached file {cached} has sha256 .* delete"):
        predictor_for(W12, SPACE)
    # MIT published no predictor for w1.0: nothing is downloaded for it.
    with pytest.raises(
        CheckpointError, match="no accuracy predictor is shipped for ofa_mbv3_d234_e346_k357_w1.0"
    ):
        predictor_for(
            "ofa_mbv3_d234_e346_k357_w1.0", get_supernet_info("ofa_mbv3_d234_e346_k357_w1.0").spec.space
        )


def test_search_on_mits_w12_needs_no_predictor_and_note10_imports_by_name(
    mirror: tuple[str, Path, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, _, mit = mirror
    monkeypatch.setenv("OFA_EDGE_MIRROR", url)
    imported = ok("lut", "import-ofa", "note10", "--out", str(tmp_path / "note10.json"))
    assert imported["resolutions"] == list(TUTORIAL_RESOLUTIONS) and imported["entries"] == 480
    assert json.loads((tmp_path / "note10.json").read_text())["device"]["name"] == "note10"
    budgets = ("--lut", str(tmp_path / "note10.json"), "--latency-ms", "25", "--macs", "400")
    found = ok("search", "--supernet", W12, *budgets, "--generations", "40", "--top", "3")
    results = found["results"]
    archs = [ArchConfig.from_dict(r["arch"]) for r in results]
    assert len(results) == 3 and all(a.r in TUTORIAL_RESOLUTIONS for a in archs)
    assert all(r["latency_ms"]["note10"] <= 25 and r["macs"] <= 400e6 for r in results)
    np.testing.assert_allclose([r["score"] for r in results], mit_scores(mit, archs), rtol=0, atol=1e-5)

    res = run("lut", "import-ofa", "note10", "--supernet", "ofa_mbv3_d234_e346_k357_w1.0", "--out", "x.json")
    assert "note10 tables were measured for ofa_mbv3_d234_e346_k357_w1.2" in error_line(res, 2)


def test_offline_the_search_fails_in_one_line_naming_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFA_EDGE_MIRROR", f"http://127.0.0.1:{_closed_port()}")
    line = error_line(run("search", "--supernet", W12, "--macs", "400"), 7)
    assert "/acc_predictor.pth" in line and "--predictor PATH" in line
    assert not list((cache_dir() / "predictors").glob("*"))  # nothing half-downloaded left behind
