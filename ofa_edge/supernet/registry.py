"""Named supernets: how to build each one and where its weights come from.

MIT's official checkpoints (and the accuracy predictor MIT published for w1.2: ``predictor_path``)
download on first use into a per-user cache (``OFA_EDGE_CACHE``, else
platformdirs' cache dir); the sha256 of the first download is recorded beside the file and
checked on every later load, since MIT publishes no hashes. ``OFA_EDGE_MIRROR`` replaces the
download base URL (for mirrors and air-gapped fleets). Weights MIT keeps on the Hugging Face hub
(``ofa_resnet50``) download with ``huggingface_hub`` at a pinned revision into its own cache
(``HF_HUB_CACHE``/``HF_HOME``), from ``HF_ENDPOINT`` when set, from the cache alone under
``HF_HUB_OFFLINE=1``; their sha256 is recorded in ofa-edge's cache and checked the same way. The
project's own default supernet ships inside the package and loads offline.

A supernet of one's own needs no registry entry: a *supernet entry file* (``NAME.toml``, what
``ofa-edge release`` writes) describes it, and wherever a registry name is taken, the path of such
a file is too (``get_supernet_info``). Format (version 1)::

    format_version = 1
    name = "flowers-mbv3"           # the id files record: letters, digits, . _ -
    description = "..."             # optional

    [weights]
    file = "flowers-mbv3.fp16.pt"   # a state dict; relative to the entry file's folder
    sha256 = "<64 hex digits>"      # checked at every load

    [spec]                          # the spec's to_dict(): MBv3Spec's here
    family = "mbv3"                 # optional: "mbv3" when left out; or "proxyless"
    width_mult = 1.0
    n_classes = 5
    stem_stride = 2                 # optional, with stage_strides: MIT's layout when left out
    stage_strides = [2, 2, 2, 1, 2]

    [spec.space]                    # SearchSpace.to_dict()
    ks_list = [3, 5, 7]
    expand_ratio_list = [3, 4, 6]
    depth_list = [2, 3, 4]
    resolutions = [128, 160, 192, 224]
    n_stages = 5                    # optional
    stage_depths = [[2, 3, 4], ...] # optional: each stage's depths (ProxylessNAS: last [1])

    [preprocessing]                 # RGB mean and std on the 0-1 scale
    mean = [0.485, 0.456, 0.406]
    std = [0.229, 0.224, 0.225]

An entry's ``name`` is its id: once a command has read the file, the name resolves to it for the
rest of the process, so what that command records (latency tables, records, predictors) names
the supernet as every later command given the same file does.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import typing
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ofa_edge.errors import CheckpointError, ConfigError, DownloadError, RegistryError, UnknownName
from ofa_edge.files import atomic_path, cache_dir, sha256_file, write_atomic
from ofa_edge.supernet.elastic import SubnetSelection
from ofa_edge.supernet.family import FamilySpec, spec_from_dict
from ofa_edge.supernet.preprocessing import CIFAR10, IMAGENET, Preprocessing
from ofa_edge.supernet.proxyless import ProxylessSpec
from ofa_edge.supernet.resnet_spec import ResNetSpec
from ofa_edge.supernet.space import SearchSpace
from ofa_edge.supernet.spec import MBv3Spec

#: MIT's file host: the supernets under ``ofa_nets/``, its other files (predictor, specialized nets) beside.
MIT_FILES_URL = "https://raw.githubusercontent.com/han-cai/files/master/ofa"
OFA_BASE_URL = f"{MIT_FILES_URL}/ofa_nets"
DOWNLOAD_TIMEOUT_S = 30.0

#: ``progress(done_bytes, total_bytes_or_None)`` while a checkpoint downloads.
ByteProgress = Callable[[int, "int | None"], None]

#: The version of the supernet entry file format this code reads and writes.
ENTRY_FORMAT_VERSION = 1


@dataclass(frozen=True)
class LocalWeights:
    """The weights a supernet entry file names: the file on this machine and its recorded sha256."""

    path: Path
    sha256: str
    entry: Path  # the entry file naming them


@dataclass(frozen=True)
class HubFile:
    """A file on the Hugging Face hub at a revision: a commit, or a branch that ofa-edge pins to
    the commit it resolves to at the first download."""

    repo_id: str
    filename: str
    revision: str

    def describe(self) -> str:
        return f"{self.repo_id}/{self.filename}@{self.revision}"


@dataclass(frozen=True)
class SupernetInfo:
    """A registry entry (or supernet entry file): the architecture (its spec: nothing to build to
    read it), how its input images are normalized, and the source of its weights."""

    name: str
    description: str
    spec: FamilySpec
    preprocessing: Preprocessing
    url_name: str | None = None  # file name under the download base URL
    packaged: str | None = None  # file name under ofa_edge/weights/
    local: LocalWeights | None = None  # from a supernet entry file
    predictor: str | None = None  # MIT's accuracy predictor: a file under MIT's ofa/ folder (mit_url)
    hub: HubFile | None = None  # weights on the Hugging Face hub

    def build(self) -> SubnetSelection[Any]:
        """The untrained supernet of this entry's spec (its family builds it)."""
        return self.spec.build()

    @property
    def url(self) -> str | None:
        if self.url_name is None:
            return None
        return f"{os.environ.get('OFA_EDGE_MIRROR', OFA_BASE_URL).rstrip('/')}/{self.url_name}"


def mit_url(path: str) -> str:
    """The URL of ``path`` under MIT's ``ofa/`` folder, or under ``OFA_EDGE_MIRROR`` when it is set."""
    return f"{os.environ.get('OFA_EDGE_MIRROR', MIT_FILES_URL).rstrip('/')}/{path}"


_SUPERNETS: dict[str, SupernetInfo] = {}
#: The supernet entry files read in this process, by name (the last one read under each name).
_ENTRIES: dict[str, SupernetInfo] = {}


def register_supernet(info: SupernetInfo) -> SupernetInfo:
    if info.name in _SUPERNETS:
        raise RegistryError(f"supernet {info.name!r} registered twice")
    _SUPERNETS[info.name] = info
    return info


def list_supernets() -> list[SupernetInfo]:
    return list(_SUPERNETS.values())


def get_supernet_info(name: str | Path) -> SupernetInfo:
    """The supernet of a registry name, or of a supernet entry file (a path ending in ``.toml``),
    whose name then resolves to it for the rest of the process."""
    if str(name).endswith(".toml"):
        info = _read_entry(Path(name))
        _ENTRIES[info.name] = info
        return info
    found = _SUPERNETS.get(str(name)) or _ENTRIES.get(str(name))
    if found is None:
        raise UnknownName("supernet", str(name), list(_SUPERNETS))
    return found


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Each table of an entry file (by its dotted name; "" the top level): key -> (type, required).
#: Parents come before their sub-tables, so each is known to be a table when its keys are checked.
_ENTRY_TABLES: dict[str, dict[str, tuple[Any, bool]]] = {
    "": {
        "format_version": (int, True),
        "name": (str, True),
        "description": (str, False),
        "weights": (dict, True),
        "spec": (dict, True),
        "preprocessing": (dict, True),
    },
    "weights": {"file": (str, True), "sha256": (str, True)},
    "spec": {
        "family": (str, False),
        "width_mult": (float, True),
        "n_classes": (int, True),
        "space": (dict, True),
        "stem_stride": (int, False),
        "stage_strides": (list[int], False),
    },
    "spec.space": {
        "ks_list": (list[int], True),
        "expand_ratio_list": (list[float], True),
        "depth_list": (list[int], True),
        "resolutions": (list[int], True),
        "n_stages": (int, False),
        "stage_depths": (list[list[int]], False),
    },
    "preprocessing": {"mean": (list[float], True), "std": (list[float], True)},
}
_KIND_NAMES: dict[Any, str] = {
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a table",
    list[int]: "a list of integers",
    list[float]: "a list of numbers",
    list[list[int]]: "a list of lists of integers",
}


def check_entry_name(name: str) -> str:
    """``name`` if it can name a supernet entry: an id safe in file names, not a registry name."""
    if not _NAME.fullmatch(name) or name.endswith(".toml"):
        raise ConfigError(
            f"{name!r} cannot name a supernet",
            hint="use letters, digits, '.', '_' and '-', starting with a letter or digit (not *.toml)",
        )
    if name in _SUPERNETS:
        raise RegistryError(
            f"supernet name {name!r} is the registry's", hint="give the supernet entry a name of its own"
        )
    return name


def _fits(value: Any, kind: Any) -> bool:
    """Whether a parsed TOML value is of ``kind`` (a number may be written as an integer)."""
    if typing.get_origin(kind) is list:
        return (
            isinstance(value, list) and bool(value) and all(_fits(v, typing.get_args(kind)[0]) for v in value)
        )
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if kind is float else isinstance(value, kind)


def _read_entry(path: Path) -> SupernetInfo:
    """The supernet a supernet entry file describes (format in the module docstring), checked."""
    if not path.is_file():
        raise ConfigError(
            f"no supernet entry file {path}",
            hint="--supernet takes a registry name or a supernet entry .toml",
        )
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"supernet entry {path} is unreadable: {err}", hint="fix its TOML") from None
    version = data.get("format_version")
    if version != ENTRY_FORMAT_VERSION:
        raise ConfigError(
            f"supernet entry {path} has format_version = {version!r}, not {ENTRY_FORMAT_VERSION}",
            hint=f"write format_version = {ENTRY_FORMAT_VERSION} (README: Supernet entry files), "
            "or update ofa-edge to read a newer entry",
        )
    for where, fields in _ENTRY_TABLES.items():
        table = data
        for part in where.split(".") if where else []:
            table = table[part]
        dotted = f"{where}." if where else ""
        unknown = sorted(set(table) - set(fields))
        if unknown:
            raise ConfigError(
                f"supernet entry {path} has unknown key {dotted}{unknown[0]}",
                hint=f"the keys of {f'[{where}]' if where else 'its top level'} are {', '.join(fields)}",
            )
        for key, (kind, required) in fields.items():
            if key not in table and required:
                raise ConfigError(
                    f"supernet entry {path} lacks {dotted}{key}",
                    hint="add it (README: Supernet entry files)",
                )
            if key in table and not _fits(table[key], kind):
                raise ConfigError(
                    f"supernet entry {path}: {dotted}{key} = {table[key]!r} is not {_KIND_NAMES[kind]}",
                    hint="correct it (README: Supernet entry files)",
                )
    weights, pre = data["weights"], data["preprocessing"]
    if not _SHA256.fullmatch(weights["sha256"]):
        raise ConfigError(
            f"supernet entry {path}: weights.sha256 = {weights['sha256']!r} is not 64 lowercase hex digits",
            hint="write the weights file's sha256 (sha256sum FILE)",
        )
    try:
        spec = spec_from_dict(data["spec"])
        if len(pre["mean"]) != 3 or len(pre["std"]) != 3 or min(pre["std"]) <= 0:
            raise ConfigError("preprocessing: mean and std need 3 values (R, G, B), std above 0")
    except ConfigError as err:
        hint = err.hint or "correct it (README: Supernet entry files)"
        raise ConfigError(f"supernet entry {path}: {err.message}", hint=hint) from None
    try:
        name = check_entry_name(data["name"])
    except (ConfigError, RegistryError) as err:
        raise type(err)(f"supernet entry {path}: {err.message}", hint=err.hint) from None
    return SupernetInfo(
        name=name,
        description=data.get("description", f"supernet entry {path}"),
        spec=spec,
        preprocessing=Preprocessing(_rgb(pre["mean"]), _rgb(pre["std"])),
        local=LocalWeights(Path(os.path.normpath(path.parent / weights["file"])), weights["sha256"], path),
    )


def _rgb(values: list[float]) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in values)
    return r, g, b


def write_entry(
    path: str | Path,
    *,
    name: str,
    description: str,
    spec: FamilySpec,
    preprocessing: Preprocessing,
    weights: str | Path,
) -> SupernetInfo:
    """Write a supernet entry file for the weights file ``weights`` (recorded relative to the
    entry's folder, with its sha256), atomically; returns the supernet as read back from it."""
    path = Path(path)
    data = {
        "format_version": ENTRY_FORMAT_VERSION,
        "name": check_entry_name(name),
        "description": description,
        "weights": {
            "file": os.path.relpath(Path(weights).absolute(), path.parent.absolute()),
            "sha256": sha256_file(weights),
        },
        "spec": spec.to_dict(),
        "preprocessing": {"mean": list(preprocessing.mean), "std": list(preprocessing.std)},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "\n".join(_toml_lines(data)) + "\n")
    return get_supernet_info(path)


def _toml_lines(table: dict[str, Any], prefix: str = "") -> list[str]:
    """``table`` as TOML lines: its values, then each sub-table under its dotted ``[header]``."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in table.items() if not isinstance(value, dict)]
    for key, sub in table.items():
        if isinstance(sub, dict):
            lines += ["", f"[{prefix}{key}]", *_toml_lines(sub, f"{prefix}{key}.")]
    return lines


def _toml_value(value: Any) -> str:
    """One TOML value: a string (JSON's escapes are TOML's), a number or a flat list."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML value for {value!r}")


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
    if info.local is not None:
        return _checked_local(info.name, info.local)
    if info.packaged is not None:
        path = Path(str(resources.files("ofa_edge") / "weights" / info.packaged))
        if not path.is_file():
            raise CheckpointError(
                f"the weights of {info.name!r} are missing from the installed package ({path})",
                hint="reinstall ofa-edge, or pass --checkpoint PATH (weights file or training run)",
            )
        return path
    if info.hub is not None:
        return hub_download(info.name, info.hub, f"supernet {info.name!r}")
    if info.url is None:
        raise CheckpointError(f"supernet {info.name!r} has no weights to load", hint="pass --checkpoint PATH")
    return cached_download(
        info.url,
        cache_dir() / "supernets" / f"{info.name}.pth",
        f"supernet {info.name!r}",
        "connect to the network (or set OFA_EDGE_MIRROR), or pass --checkpoint PATH to a local copy",
        progress,
    )


def predictor_path(info: SupernetInfo, progress: ByteProgress | None = None) -> Path | None:
    """Where MIT's accuracy predictor of ``info`` is on this machine (downloaded and hash-checked
    as needed), or None if MIT published none for it."""
    if info.predictor is None:
        return None
    return cached_download(
        mit_url(info.predictor),
        cache_dir() / "predictors" / f"{info.name}.pth",
        f"the accuracy predictor of {info.name!r}",
        "connect to the network (or set OFA_EDGE_MIRROR), or pass --predictor PATH to a local copy",
        progress,
    )


def hub_download(name: str, hub: HubFile, what: str) -> Path:
    """``hub``'s file in huggingface_hub's cache, downloaded on first use (``HF_ENDPOINT`` and
    ``HF_HUB_OFFLINE`` respected). A branch revision is pinned at the first download: the commit
    it resolved to is recorded in ofa-edge's cache and asked for from then on, so a moved branch
    cannot swap the file; its sha256 is recorded and checked as for MIT's other files."""
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    pin = cache_dir() / "hub-revisions" / f"{name}.commit"
    revision = pin.read_text().strip() if pin.is_file() else hub.revision
    try:
        path = huggingface_hub.hf_hub_download(
            hub.repo_id, hub.filename, revision=revision, endpoint=os.environ.get("HF_ENDPOINT")
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DownloadError(
            f"cannot download {what} from the Hugging Face hub ({hub.describe()}, at {revision}): {reason}",
            hint="connect to the network (or set HF_ENDPOINT to a mirror; under HF_HUB_OFFLINE=1 only "
            "the hub cache is read), or pass --checkpoint PATH to a local copy",
            url=hub.describe(),
        ) from None
    if not pin.is_file():  # huggingface_hub's cache keeps each file under snapshots/<commit>/
        pin.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(pin, Path(path).parents[len(Path(hub.filename).parts) - 1].name + "\n")
    return check_recorded_sha256(Path(path), cache_dir() / "hub-sha256" / f"{name}.sha256")


def cached_download(url: str, path: Path, what: str, hint: str, progress: ByteProgress | None = None) -> Path:
    """``path``, downloaded from ``url`` on first use; the sha256 of that download is recorded
    beside it and checked at every later use (MIT publishes no hashes). ``what`` and ``hint``
    name the file and the way out in the error of a failed download."""
    record = path.with_name(path.name + ".sha256")
    if not path.is_file():
        try:
            download(url, path, progress)
        except DownloadError as err:
            raise DownloadError(
                f"cannot download {what} from {url}: {err.message.split(': ', 1)[-1]}", hint=hint, url=url
            ) from None
        record.unlink(missing_ok=True)
    return check_recorded_sha256(path, record)


def check_recorded_sha256(path: Path, record: Path) -> Path:
    """``path``, after checking its sha256 against ``record`` (written now if there is none)."""
    digest = sha256_file(path)
    if not record.is_file():
        record.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(record, digest + "\n")
    elif record.read_text().strip() != digest:
        raise CheckpointError(
            f"cached file {path} has sha256 {digest[:12]}..., "
            f"but {record.read_text().strip()[:12]}... was recorded when it was downloaded",
            hint=f"delete {path} (and {record}) to download it again",
        )
    return path


def _checked_local(name: str, local: LocalWeights) -> Path:
    """An entry file's weights file, if it is there with the sha256 the entry records."""
    if not local.path.is_file():
        raise CheckpointError(
            f"the weights of supernet {name!r} are missing: no file {local.path} (named in {local.entry})",
            hint="put the weights file there, or correct weights.file in the entry",
        )
    digest = sha256_file(local.path)
    if digest != local.sha256:
        raise CheckpointError(
            f"weights file {local.path} has sha256 {digest[:12]}..., "
            f"but its supernet entry {local.entry} records {local.sha256[:12]}...",
            hint=f"restore the file the entry was written for; if these are the weights you mean, "
            f'set sha256 = "{digest}" in {local.entry}',
        )
    return local.path


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
) -> SubnetSelection[Any]:
    """Build the named supernet (or entry file's) and load its weights (from ``checkpoint`` if given)."""
    info = get_supernet_info(name)
    net = info.build()
    if checkpoint is not None:
        net.load_state_dict(read_checkpoint(checkpoint))
    elif pretrained:
        net.load_state_dict(supernet_weights(info, progress))
    return net.eval()


def supernet_weights(info: SupernetInfo, progress: ByteProgress | None = None) -> dict[str, Any]:
    """``info``'s own state dict (downloaded and hash-checked as needed); only the registry's own
    files, whose hashes were checked, may be fully unpickled."""
    return read_checkpoint(checkpoint_path(info, progress), trusted=info.local is None)


for _width in (1.0, 1.2):
    _name = f"ofa_mbv3_d234_e346_k357_w{_width}"
    register_supernet(
        SupernetInfo(
            name=_name,
            description=f"MIT's OFA-MobileNetV3 w{_width}, ImageNet (1000 classes), r 128-224",
            spec=MBv3Spec(_width, 1000),
            preprocessing=IMAGENET,
            url_name=_name,
            # MIT's tutorial predictor (ofa/tutorial/accuracy_predictor.py), trained on w1.2 subnets.
            predictor="acc_predictor.pth" if _width == 1.2 else None,
        )
    )
#: MIT's OFA-ProxylessNAS w1.3 (its module: ``ofa_proxyless``): relu6, no SE, BN eps 1e-3.
register_supernet(
    SupernetInfo(
        name="ofa_proxyless_d234_e346_k357_w1.3",
        description="MIT's OFA-ProxylessNAS w1.3, ImageNet (1000 classes), r 128-224",
        spec=ProxylessSpec(1.3, 1000),
        preprocessing=IMAGENET,
        url_name="ofa_proxyless_d234_e346_k357_w1.3",
    )
)
#: MIT's OFA-ResNet50 (its module: ``ofa_resnet``): weights on the Hugging Face hub at a branch,
#: pinned to the commit it resolves to at the first download (see :func:`hub_download`).
register_supernet(
    SupernetInfo(
        name="ofa_resnet50",
        description="MIT's OFA-ResNet50 (ResNet50-D space), ImageNet (1000 classes), r 128-224",
        spec=ResNetSpec(1000),
        preprocessing=IMAGENET,
        hub=HubFile("han-cai/ofa", "ofa_supernet_resnet50", "main"),
        predictor="ofa_resnet50_acc_predictor.pth",
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
#: Shipped inside the package as fp16 weights (model card: ``weights/ofa-mbv3-cifar10-v2.md``).
CIFAR10_V2_SUPERNET = register_supernet(
    SupernetInfo(
        name="ofa-mbv3-cifar10-v2",
        description="ofa-edge's OFA-MobileNetV3 w0.5 in a CIFAR layout (stem stride 1), CIFAR-10, "
        "r 24-40, shipped offline",
        spec=CIFAR10_V2_SPEC,
        preprocessing=CIFAR10,
        packaged="ofa_mbv3_cifar10_v2.fp16.pt",
    )
)


def describe_supernet(name: str | Path) -> dict[str, Any]:
    """What files that depend on a supernet record of it: its id (an entry file's name, not its
    path), width, classes, space (and strides, when not MIT's)."""
    info = get_supernet_info(name)
    return {"id": info.name, **info.spec.to_dict()}
