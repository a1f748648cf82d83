"""``--init``: a new run's supernet starts from another supernet's backbone, its classifier new."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ofa_edge.errors import CheckpointError
from ofa_edge.files import cache_dir
from ofa_edge.supernet.ofa_mbv3 import OFAMobileNetV3
from ofa_edge.supernet.spec import MBv3Spec
from ofa_edge.training.init import init_backbone, init_spec

W10 = "ofa_mbv3_d234_e346_k357_w1.0"
CLASSIFIER = ("classifier.linear.weight", "classifier.linear.bias")


def _random_net(spec: MBv3Spec, seed: int) -> OFAMobileNetV3:
    """A supernet whose every parameter and BN buffer is random (no tensor keeps its init value)."""
    torch.manual_seed(seed)
    net = OFAMobileNetV3.from_spec(spec)
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5)
            else:
                t.random_(1, 100)
    return net


@pytest.fixture(scope="module")
def mit_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random w1.0, 1000-class checkpoint saved as MIT saves theirs (old key names included)."""
    state = _random_net(MBv3Spec(1.0, 1000), seed=1).state_dict()
    saved = {k.replace(".conv.", ".mobile_inverted_conv.", 1) if k.startswith("blocks.") else k: v
             for k, v in state.items()}  # fmt: skip
    path = tmp_path_factory.mktemp("mit") / "ofa_w10.pth"
    torch.save({"state_dict": saved, "epoch": 1}, path)
    return path, state


def _check_initialized(
    net: OFAMobileNetV3, fresh: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> None:
    """Every tensor but the classifier is the source's; the classifier is the net's own, unchanged."""
    loaded = net.state_dict()
    assert set(loaded) == set(state)
    for key, value in loaded.items():
        if key in CLASSIFIER:
            assert value.shape[0] == 3 and torch.equal(value, fresh[key]), key
        else:
            assert torch.equal(value, state[key]), key


def test_init_from_an_mit_checkpoint_keeps_the_new_classifier(mit_file) -> None:
    path, state = mit_file
    net = OFAMobileNetV3.from_spec(MBv3Spec(1.0, 3))
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    described = init_backbone(net, str(path))
    _check_initialized(net, fresh, state)
    n = len(state) - len(CLASSIFIER)
    assert described == f"backbone of {path} ({n} tensors); new 3-class classifier"
    assert init_spec(str(path)) is None  # a bare weights file: the recipe's layout


def test_init_from_a_registry_name_uses_its_cached_weights(mit_file) -> None:
    """A registry name loads the registry's weights (here a copy already in the download cache,
    so nothing is downloaded) and gives its layout."""
    path, state = mit_file
    cached = cache_dir() / "supernets" / f"{W10}.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    assert init_spec(W10) == MBv3Spec(1.0, 1000)
    net = OFAMobileNetV3.from_spec(MBv3Spec(1.0, 3))
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    assert init_backbone(net, W10).startswith(f"backbone of {W10} (")
    _check_initialized(net, fresh, state)


def test_init_from_another_layout_fails_in_one_line(tmp_path: Path) -> None:
    """A w1.2 backbone does not fit a w1.0 supernet: refused, naming a key and both shapes, and
    nothing is loaded."""
    torch.save({"state_dict": _random_net(MBv3Spec(1.2, 1000), seed=2).state_dict()}, tmp_path / "w12.pth")
    net = OFAMobileNetV3.from_spec(MBv3Spec(1.0, 3))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(CheckpointError) as caught:
        init_backbone(net, str(tmp_path / "w12.pth"))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(
        f"cannot start from the backbone of {tmp_path / 'w12.pth'}"
    )
    assert "first_conv.conv.weight is (24, 3, 3, 3) in the checkpoint, (16, 3, 3, 3) in the model" in message
    assert "(hint: start from a supernet of the new one's width" in message
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_init_from_a_missing_source_names_it(tmp_path: Path) -> None:
    net = OFAMobileNetV3.from_spec(MBv3Spec(1.0, 3))
    with pytest.raises(CheckpointError, match="does not exist"):
        init_backbone(net, str(tmp_path / "nowhere.pth"))
    with pytest.raises(KeyError, match="unknown supernet 'ofa_mbv3_w1.0'"):
        init_spec("ofa_mbv3_w1.0")
