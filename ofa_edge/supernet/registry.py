"""Named supernets: how to build each one and where its weights come from.

MIT's official checkpoints download on first use into a per-user cache (``OFA_EDGE_CACHE``, else
platformdirs' cache dir); the sha256 of the first download is recorded beside the file and
checked on every later load, since MIT publishes no hashes. ``OFA_EDGE_MIRROR`` replaces the
download base URL (for mirrors and air-gapped fleets). The project's own default supernet ships
inside the package and loads offline.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ofa_edge.errors import CheckpointError, DownloadError, RegistryError, UnknownName
from ofa_edge.files import atomic_path, cache_dir, sha256_file, write_atomic
from ofa_edge.supernet.ofa_mbv3 import OFAMobileNetV3
from ofa_edge.supernet.preprocessing import CIFAR10, IMAGENET, Preprocessing
from ofa_edge.supernet.space import SearchSpace
from ofa_edge.supernet.spec import MBv3Spec

OFA_BASE_URL = "https://raw.githubusercontent.com/han-cai/files/master/ofa/ofa_nets"
DOWNLOAD_TIMEOUT_S = 30.0

#: ``progress(done_bytes, total_bytes_or_None)`` while a checkpoint downloads.
ByteProgress = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class SupernetInfo:
    """A registry entry: the architecture (its spec: nothing to build to read it), how its input
    images are normalized, and the source of its weights."""

    name: str
    description: str
    spec: MBv3Spec
    preprocessing: Preprocessing
    url_name: str | None = None  # file name under the download base URL
    packaged: str | None = None  # file name under ofa_edge/weights/

    def build(self) -> OFAMobileNetV3:
        """The untrained supernet of this entry's spec."""
        return OFAMobileNetV3.from_spec(self.spec)

    @property
    def url(self) -> str | None:
        if self.url_name is None:
            return None
        return f"{os.environ.get('OFA_EDGE_MIRROR', OFA_BASE_URL).rstrip('/')}/{self.url_name}"


_SUPERNETS: dict[str, SupernetInfo] = {}


def register_supernet(info: SupernetInfo) -> SupernetInfo:
    if info.name in _SUPERNETS:
        raise RegistryError(f"supernet {info.name!r} registered twice")
    _SUPERNETS[info.name] = info
    return info


def list_supernets() -> list[SupernetInfo]:
    return list(_SUPERNETS.values())


def get_supernet_info(name: str) -> SupernetInfo:
    if name not in _SUPERNETS:
        raise UnknownName("supernet", name, list(_SUPERNETS))
    return _SUPERNETS[name]


def download(url: str, dest: Path, progress: ByteProgress | None = None) -> None:
    """Fetch ``url`` to ``dest`` atomically (a temp file of this download's own, renamed when
    complete): two downloads of one file never mix, and a cut one leaves nothing behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (
            atomic_path(dest) as part,
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp,
            part.open("wb") as f,
        ):
            total = int(resp.headers["Content-Length"]) if resp.headers["Content-Length"] else None
            done = 0
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            if total is not None and done != total:  # inside: a short file is never moved in place
                raise OSError(f"connection closed after {done} of {total} bytes")
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise DownloadError(f"cannot download {url}: {reason}", url=url) from None


def checkpoint_path(info: SupernetInfo, progress: ByteProgress | None = None) -> Path:
    """Where ``info``'s weights are on this machine, downloading and hash-checking as needed."""
    if info.packaged is not None:
        path = Path(str(resources.files("ofa_edge") / "weights" / info.packaged))
        if not path.is_file():
            raise CheckpointError(
                f"the weights of {info.name!r} are missing from the installed package ({path})",
                hint="reinstall ofa-edge, or pass --checkpoint PATH (weights file or training run)",
            )
        return path
    if info.url is None:
        raise CheckpointError(f"supernet {info.name!r} has no weights to load", hint="pass --checkpoint PATH")
    path = cache_dir() / "supernets" / f"{info.name}.pth"
    record = path.with_name(path.name + ".sha256")
    if not path.is_file():
        try:
            download(info.url, path, progress)
        except DownloadError as err:
            raise DownloadError(
                f"cannot download supernet {info.name!r} from {info.url}: {err.message.split(': ', 1)[-1]}",
                hint="connect to the network (or set OFA_EDGE_MIRROR), "
                "or pass --checkpoint PATH to a local copy",
                url=info.url,
            ) from None
        record.unlink(missing_ok=True)
    digest = sha256_file(path)
    if not record.is_file():
        write_atomic(record, digest + "\n")
    elif record.read_text().strip() != digest:
        raise CheckpointError(
            f"cached checkpoint {path} has sha256 {digest[:12]}..., "
            f"but {record.read_text().strip()[:12]}... was recorded when it was downloaded",
            hint=f"delete {path} to download it again",
        )
    return path


def read_checkpoint(path: str | Path, trusted: bool = False) -> dict[str, Any]:
    """The state dict in a checkpoint file (bare, or under ``"state_dict"`` as OFA saves them).

    Files are read with ``weights_only=True``; only ``trusted`` files (registry downloads whose
    hash was verified) may fall back to full unpickling.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist", hint="check the path")
    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            if not trusted:
                raise
            data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path}: {first_line}",
            hint="the file is truncated or not a PyTorch checkpoint; re-create or re-download it",
        ) from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(
            f"checkpoint {path} holds no state dict of tensors",
            hint="save it with torch.save(model.state_dict(), path)",
        )
    return data


def load_supernet(
    name: str,
    *,
    checkpoint: str | Path | None = None,
    pretrained: bool = True,
    progress: ByteProgress | None = None,
) -> OFAMobileNetV3:
    """Build the named supernet and load its weights (from ``checkpoint`` if given)."""
    info = get_supernet_info(name)
    net = info.build()
    if checkpoint is not None:
        net.load_state_dict(read_checkpoint(checkpoint))
    elif pretrained:
        net.load_state_dict(read_checkpoint(checkpoint_path(info, progress), trusted=True))
    return net.eval()


for _width in (1.0, 1.2):
    _name = f"ofa_mbv3_d234_e346_k357_w{_width}"
    register_supernet(
        SupernetInfo(
            name=_name,
            description=f"MIT's OFA-MobileNetV3 w{_width}, ImageNet (1000 classes), r 128-224",
            spec=MBv3Spec(_width, 1000),
            preprocessing=IMAGENET,
            url_name=_name,
        )
    )
#: The project's default: trained by ``ofa-edge train --recipe cifar10-default`` (issue 5) and
#: shipped inside the package as fp16 weights. Same OFA layout at width 0.5, CIFAR resolutions.
CIFAR10_SUPERNET = register_supernet(
    SupernetInfo(
        name="ofa-mbv3-cifar10",
        description="ofa-edge's OFA-MobileNetV3 w0.5, CIFAR-10 (10 classes), r 24-40, shipped offline",
        spec=MBv3Spec(0.5, 10, SearchSpace(resolutions=(24, 28, 32, 36, 40))),
        preprocessing=CIFAR10,
        packaged="ofa_mbv3_cifar10.fp16.pt",
    )
)


#: The layout of the candidate successor of the default (issue 20): a CIFAR layout, stem stride
#: 1, so 32-px images do not end as a 1x1 map; the ``cifar10-v2`` training recipe trains it.
CIFAR10_V2_SPEC = MBv3Spec(0.5, 10, SearchSpace(resolutions=(24, 28, 32, 36, 40)), stem_stride=1)
#: No packaged weights yet: pass ``--checkpoint RUN``.
CIFAR10_V2_SUPERNET = register_supernet(
    SupernetInfo(
        name="ofa-mbv3-cifar10-v2",
        description="ofa-edge's OFA-MobileNetV3 w0.5 in a CIFAR layout, CIFAR-10, r 24-40 "
        "(recipe cifar10-v2; weights: --checkpoint)",
        spec=CIFAR10_V2_SPEC,
        preprocessing=CIFAR10,
    )
)


def describe_supernet(name: str) -> dict[str, Any]:
    """What files that depend on a supernet record of it: its id, width, classes, space (and
    strides, when not MIT's)."""
    return {"id": name, **get_supernet_info(name).spec.to_dict()}
