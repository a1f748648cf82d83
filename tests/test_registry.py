"""The supernet registry: first-use download from a (loopback) mirror, sha256 record, errors."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from ofa_edge.errors import CheckpointError, DownloadError, UnknownName
from ofa_edge.export.images import prepare_images
from ofa_edge.files import cache_dir
from ofa_edge.supernet import OFAMobileNetV3
from ofa_edge.supernet.preprocessing import CIFAR10, IMAGENET
from ofa_edge.supernet.registry import get_supernet_info, list_supernets, load_supernet
from tests.mirror import serving

W10 = "ofa_mbv3_d234_e346_k357_w1.0"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, torch.Tensor]]]:
    """A loopback HTTP server holding a random w1.0 checkpoint saved the way OFA saves them."""
    root = tmp_path_factory.mktemp("mirror")
    torch.manual_seed(0)
    state = OFAMobileNetV3().state_dict()
    torch.save({"state_dict": state, "epoch": 1}, root / W10)

    with serving(root) as url:
        yield url, state


def test_registry_names() -> None:
    names = [i.name for i in list_supernets()]
    assert W10 in names and "ofa_mbv3_d234_e346_k357_w1.2" in names
    with pytest.raises(UnknownName, match="did you mean ofa_mbv3_d234_e346_k357_w1.0"):
        load_supernet("ofa_mbv3_d234_e346_k357_w1.00")


#: The pixel (255, 0, 102) normalized by hand, (p / 255 - mean) / std per channel.
PIXEL = np.array([255, 0, 102], np.uint8)
PIXEL_IMAGENET = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0.4 - 0.406) / 0.225]
PIXEL_CIFAR10 = [(1 - 0.4914) / 0.2470, (0 - 0.4822) / 0.2435, (0.4 - 0.4465) / 0.2616]


def test_each_supernet_normalizes_with_its_own_statistics() -> None:
    """MIT's supernets were trained on ImageNet, ofa-edge's on CIFAR-10: images prepared for a
    subnet of each are normalized with that dataset's mean and std."""
    imagenet, cifar10 = (IMAGENET, PIXEL_IMAGENET), (CIFAR10, PIXEL_CIFAR10)
    expected = {
        "ofa_mbv3_d234_e346_k357_w1.0": imagenet,
        "ofa_mbv3_d234_e346_k357_w1.2": imagenet,
        "ofa_proxyless_d234_e346_k357_w1.3": imagenet,
        "ofa_resnet50": imagenet,
        "ofa-mbv3-cifar10": cifar10,
        "ofa-mbv3-cifar10-v2": cifar10,
    }
    assert sorted(expected) == sorted(i.name for i in list_supernets())
    for name, (preprocessing, pixel) in expected.items():
        info = get_supernet_info(name)
        assert info.preprocessing == preprocessing, name
        x = prepare_images(np.tile(PIXEL, (1, 2, 2, 1)), 2, info.preprocessing)
        assert x.shape == (1, 3, 2, 2) and x.dtype == np.float32
        np.testing.assert_allclose(x[0, :, 1, 1], pixel, atol=1e-6, err_msg=name)


def test_download_records_and_checks_sha(mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    url, state = mirror
    monkeypatch.setenv("OFA_EDGE_MIRROR", url)
    seen: list[int] = []
    net = load_supernet(W10, progress=lambda done, total: seen.append(done))
    assert seen and seen[-1] == (Path(cache_dir()) / "supernets" / f"{W10}.pth").stat().st_size
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    cached = cache_dir() / "supernets" / f"{W10}.pth"
    record = cached.with_name(cached.name + ".sha256")
    assert len(record.read_text().strip()) == 64
    # Offline now: the cached, verified copy still loads.
    monkeypatch.setenv("OFA_EDGE_MIRROR", "http://127.0.0.1:9")
    load_supernet(W10)
    # A corrupted cache is refused, naming the file and the fix.
    with cached.open("r+b") as f:
        f.seek(1000)
        f.write(b"\x00" * 16)
    with pytest.raises(CheckpointError, match=f"delete {cached}"):
        load_supernet(W10)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_error_names_url_and_alternative(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFA_EDGE_MIRROR", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(DownloadError) as info:
        load_supernet(W10)
    message = str(info.value)
    assert "\n" not in message
    assert "http://127.0.0.1:" in message and W10 in message and "--checkpoint PATH" in message
    assert not (cache_dir() / "supernets" / f"{W10}.pth").exists()
    assert not list((cache_dir() / "supernets").glob("*"))  # no temp file left behind either


def test_local_checkpoint_and_broken_ones(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save(OFAMobileNetV3().state_dict(), good)
    load_supernet(W10, checkpoint=good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*truncated.pth"):
        load_supernet(W10, checkpoint=truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_supernet(W10, checkpoint=tmp_path / "nope.pth")
    wide = tmp_path / "w12.pth"
    torch.save(OFAMobileNetV3(width_mult=1.2).state_dict(), wide)
    with pytest.raises(CheckpointError, match=r"shape mismatch.*first_conv.conv.weight is \(24, 3, 3, 3\)"):
        load_supernet(W10, checkpoint=wide)
    partial = tmp_path / "partial.pth"
    sd = OFAMobileNetV3().state_dict()
    sd.pop("classifier.linear.bias")
    torch.save(sd, partial)
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): classifier.linear.bias"):
        load_supernet(W10, checkpoint=partial)


def test_an_entry_describes_its_supernet_without_building_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading a supernet's layout (tables, search, counting) builds no torch module."""
    from ofa_edge.supernet import registry
    from ofa_edge.supernet.ofa_mbv3 import OFAMobileNetV3

    built = {
        name: registry.get_supernet_info(name).build().spec
        for name in ("ofa-mbv3-cifar10", "ofa-mbv3-cifar10-v2")
    }

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a torch module was built")

    monkeypatch.setattr(OFAMobileNetV3, "__init__", refuse)
    for info in registry.list_supernets():
        assert registry.describe_supernet(info.name) == {"id": info.name, **info.spec.to_dict()}
    for name, spec in built.items():
        assert registry.get_supernet_info(name).spec == spec  # the entry's spec is the built net's
