"""``ofa_resnet50`` by name: its weights through huggingface_hub, MIT's predictor as an artifact.

The hub is a loopback stand-in for ``/{repo}/resolve/{revision}/{file}`` (``HF_ENDPOINT``), so the
real huggingface_hub downloads into its own cache (a temporary ``HF_HUB_CACHE``), and offline mode
is the library's own. The served checkpoint is MIT's ``OFAResNets`` with random weights, saved as
MIT saves it; the predictor is MIT's ``AccuracyPredictor`` over its ``ResNetArchEncoder``, saved by
MIT's code, and must predict through ofa-edge what it predicts through MIT's.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import constants as hub_constants

from ofa_edge.accuracy.predictor import predictor_for
from ofa_edge.accuracy.resnet_predictor import MIT_RESNET_RESOLUTIONS, load_resnet_predictor
from ofa_edge.errors import CheckpointError, ConfigError, DownloadError
from ofa_edge.files import cache_dir
from ofa_edge.supernet.family import spec_from_dict
from ofa_edge.supernet.ofa_resnet import OFAResNet
from ofa_edge.supernet.preprocessing import IMAGENET
from ofa_edge.supernet.registry import (
    checkpoint_path,
    get_supernet_info,
    list_supernets,
    load_supernet,
    predictor_path,
)
from ofa_edge.supernet.resnet_spec import ResNetArch
from ofa_edge.testing.mit_reference import import_mit
from tests.mirror import HUB_COMMIT, serving, serving_hub
from tests.test_mit_equivalence import _randomize
from tests.test_mit_resnet import _mit_supernet
from tests.test_registry import _closed_port

mit_predictor_module = import_mit("ofa.nas.accuracy_predictor")
OFA_RESNET50 = get_supernet_info("ofa_resnet50")
SPACE = OFA_RESNET50.spec.space


def test_the_entry() -> None:
    assert OFA_RESNET50.name == "ofa_resnet50" and OFA_RESNET50.preprocessing == IMAGENET
    assert OFA_RESNET50.spec.n_classes == 1000 and OFA_RESNET50 in list_supernets()
    assert spec_from_dict(json.loads(json.dumps(OFA_RESNET50.spec.to_dict()))) == OFA_RESNET50.spec
    assert isinstance(OFA_RESNET50.build(), OFAResNet)
    assert (min(SPACE.resolutions), max(SPACE.resolutions)) == (128, 224)
    assert (OFA_RESNET50.hub and OFA_RESNET50.hub.describe()) == "han-cai/ofa/ofa_supernet_resnet50@main"


def test_weights_download_through_the_hub_once_and_are_hash_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mit = _mit_supernet()
    _randomize(mit, seed=4)
    buffer = io.BytesIO()
    torch.save({"state_dict": mit.state_dict(), "epoch": 0}, buffer)  # as MIT's checkpoints are
    served = buffer.getvalue()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with serving_hub({"han-cai/ofa/ofa_supernet_resnet50": served}) as (url, hits):
        monkeypatch.setenv("HF_ENDPOINT", url)
        net = load_supernet("ofa_resnet50")
        assert all(torch.equal(v, mit.state_dict()[k]) for k, v in net.state_dict().items())
        assert hits and all(h == "/han-cai/ofa/resolve/main/ofa_supernet_resnet50" for h in hits)
    cached = tmp_path / "hub" / "models--han-cai--ofa" / "snapshots" / HUB_COMMIT / "ofa_supernet_resnet50"
    assert cached.read_bytes() == served  # huggingface_hub's own cache layout
    record = cache_dir() / "hub-sha256" / "ofa_resnet50.sha256"
    assert record.read_text().strip() == hashlib.sha256(served).hexdigest()
    pin = cache_dir() / "hub-revisions" / "ofa_resnet50.commit"
    assert pin.read_text().strip() == HUB_COMMIT  # the commit "main" resolved to

    # The branch is pinned: with the hub's cache gone, the file is asked for at that commit.
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub2"))
    with serving_hub({"han-cai/ofa/ofa_supernet_resnet50": served}) as (url, hits):
        monkeypatch.setenv("HF_ENDPOINT", url)
        assert checkpoint_path(OFA_RESNET50).read_bytes() == served
        assert hits and all(h == f"/han-cai/ofa/resolve/{HUB_COMMIT}/ofa_supernet_resnet50" for h in hits)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    # Offline (huggingface_hub's own switch, the hub unreachable): the cache serves it.
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    assert checkpoint_path(OFA_RESNET50).read_bytes() == served

    # Another file in the cache's place is refused, naming both files to delete.
    blob = cached.resolve()
    blob.chmod(0o644)
    blob.write_bytes(served + b"x")
    with pytest.raises(CheckpointError, match="has sha256 .* was recorded when it was downloaded") as err:
        load_supernet("ofa_resnet50")
    assert str(record) in str(err.value)

    # Offline with an empty cache: one line naming the hub file and the way out.
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(DownloadError, match="han-cai/ofa/ofa_supernet_resnet50@main") as err:
        checkpoint_path(OFA_RESNET50)
    assert "HF_HUB_OFFLINE" in str(err.value) and "\n" not in err.value.message


def _mit_predictor(seed: int) -> torch.nn.Module:
    """MIT's ResNet50 accuracy predictor with random weights and base_acc off zero."""
    encoder = mit_predictor_module.ResNetArchEncoder(
        image_size_list=list(MIT_RESNET_RESOLUTIONS),
        depth_list=[0, 1, 2],
        expand_list=[0.2, 0.25, 0.35],
        width_mult_list=[0.65, 0.8, 1.0],
    )
    torch.manual_seed(seed)
    predictor = mit_predictor_module.AccuracyPredictor(encoder, device="cpu")
    with torch.no_grad():
        predictor.base_acc.fill_(0.78)
    return predictor.eval()


def _random_archs(n: int, seed: int) -> list[ResNetArch]:
    rng = random.Random(seed)
    usable = [r for r in MIT_RESNET_RESOLUTIONS if r in SPACE.resolutions]
    return [ResNetArch(a.d, a.e, a.w, rng.choice(usable)) for a in (SPACE.sample(rng) for _ in range(n))]


@torch.no_grad()
def test_mits_resnet_predictor_predicts_what_mits_code_predicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mit = _mit_predictor(0)
    root = tmp_path / "mirror"
    root.mkdir()
    served = root / "ofa_resnet50_acc_predictor.pth"
    torch.save(mit.state_dict(), served)
    archs = _random_archs(100, seed=1)
    specs = [{"d": list(a.d), "e": list(a.e), "w": list(a.w), "image_size": a.r} for a in archs]
    expected = mit.predict_acc(specs).numpy()
    assert np.std(expected) > 1e-3  # the comparison is not between constants
    with serving(root) as url:
        monkeypatch.setenv("OFA_EDGE_MIRROR", url)
        path = predictor_path(OFA_RESNET50)
    assert path is not None and path.read_bytes() == served.read_bytes()
    assert Path(f"{path}.sha256").read_text().strip() == hashlib.sha256(served.read_bytes()).hexdigest()
    predictor = predictor_for("ofa_resnet50", SPACE)  # by name: the family's reader, MIT's file
    assert float(predictor.base_acc) == pytest.approx(0.78)
    np.testing.assert_allclose(predictor.predict(archs), expected, rtol=0, atol=1e-5)

    with pytest.raises(ConfigError, match="outside the predictor's space: r=132"):
        predictor.predict([ResNetArch(archs[0].d, archs[0].e, archs[0].w, 132)])
    torch.save({"layers.0.0.weight": torch.zeros(400, 90), "base_acc": torch.zeros(1)}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="takes 90 features; MIT's ResNet50 encoding .* has 82"):
        load_resnet_predictor(tmp_path / "x.pth", SPACE)
