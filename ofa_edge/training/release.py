"""Releasing a trained supernet: a training run's weights as the fp16 file the package ships.

``release_weights`` reads a run's Trainer checkpoint, checks it fits the registry's network (and
was trained on images normalized as that entry normalizes them) and writes the bare state dict
with every floating-point tensor in fp16 (half the size); loading it into the fp32 network
converts back (``load_supernet`` does so for the packaged file). A run of one's own, for no
registry entry, is released with a supernet entry file beside its weights that describes the
run's layout and preprocessing (``ofa_edge.supernet.registry``), so ``--supernet ENTRY.toml``
loads it everywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ofa_edge.errors import CheckpointError, ConfigError
from ofa_edge.files import atomic_path
from ofa_edge.supernet.registry import check_entry_name, get_supernet_info, read_checkpoint, write_entry
from ofa_edge.training.config import CHECKPOINT_VERSION, TrainConfig


@dataclass(frozen=True)
class ReleasedWeights:
    """What ``release_weights`` wrote: the file, its sha256 and its size in bytes, the supernet
    they are for (registry name or entry name) and the entry file written (None: for the registry)."""

    path: Path
    sha256: str
    size_bytes: int
    supernet: str
    entry: Path | None = None


def read_run_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training run's checkpoint (``run_dir`` or ``run_dir/checkpoint.pt``), loaded safely."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"no training checkpoint at {path}", hint="pass an ofa-edge train run folder")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read training checkpoint {path}: {first}") from None
    if not is_run_checkpoint(ckpt) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} is not an ofa-edge training checkpoint (version {CHECKPOINT_VERSION})",
            hint="pass the checkpoint.pt that ofa-edge train writes",
        )
    return ckpt


def is_run_checkpoint(data: Any) -> bool:
    """Whether a loaded file has the Trainer's checkpoint layout."""
    return isinstance(data, dict) and isinstance(data.get("model"), dict) and "config" in data


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The supernet state dict in a released weights file, or in a training run (folder or checkpoint)."""
    path = Path(path)
    if path.is_dir():
        return read_run_checkpoint(path)["model"]
    try:
        data = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
    except Exception:
        data = None  # read_checkpoint below names the problem
    return read_run_checkpoint(path)["model"] if is_run_checkpoint(data) else read_checkpoint(path)


def release_weights(
    run_dir: str | Path,
    out_path: str | Path,
    *,
    supernet: str | None = None,
    allow_unfinished: bool = False,
    name: str | None = None,
    entry: str | Path | None = None,
) -> ReleasedWeights:
    """Write the run's supernet weights as an fp16 state dict to ``out_path``, for registry
    supernet ``supernet`` or, without one, with a supernet entry file ``entry`` (default:
    ``out_path`` with suffix ``.toml``) named ``name`` (default: the run folder's name) for the
    run's own layout. A run still training is refused unless ``allow_unfinished``."""
    ckpt = read_run_checkpoint(run_dir)
    config = TrainConfig.from_dict(ckpt["config"])
    phase = ckpt["state"]["phase"]
    if phase < len(config.phases) and not allow_unfinished:
        raise CheckpointError(
            f"the run in {run_dir} has not finished training (phase {phase + 1}/{len(config.phases)} "
            f"{config.phases[phase].name!r}, epoch {ckpt['state']['epoch'] + 1})",
            hint="release it when ofa-edge train reports finished (or pass allow_unfinished=True)",
        )
    out = Path(out_path)
    if supernet is None:  # the run's own layout, described by an entry file written beside
        run_folder = Path(run_dir).resolve()
        run_folder = run_folder if run_folder.is_dir() else run_folder.parent
        target = check_entry_name(name or run_folder.name)  # checked before anything is written
        entry_path = Path(entry) if entry is not None else out.with_suffix(".toml")
        if entry_path.suffix != ".toml" or entry_path.resolve() == out.resolve():
            raise ConfigError(
                f"cannot write supernet entry {entry_path} for weights {out}",
                hint="an entry file's name ends in .toml, the weights file's does not",
            )
        net = config.build()
    else:
        if name is not None or entry is not None:
            raise ConfigError(
                f"a release for registry supernet {supernet!r} writes no entry file to name",
                hint="leave out the supernet to release with an entry file, or leave out its name and path",
            )
        info = get_supernet_info(supernet)
        if config.preprocessing != info.preprocessing:
            raise CheckpointError(
                f"the run in {run_dir} normalized images with {config.preprocessing}, "
                f"but supernet {supernet!r} is evaluated and exported with {info.preprocessing}",
                hint="release it for a supernet whose registry entry has the run's preprocessing",
            )
        target, net = info.name, info.build()
    net.load_state_dict(ckpt["model"])  # fits, or says what does not
    half = {key: (t.half() if t.is_floating_point() else t).contiguous() for key, t in ckpt["model"].items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(half, tmp)
    data = out.read_bytes()
    released = ReleasedWeights(out, hashlib.sha256(data).hexdigest(), len(data), target)
    if supernet is not None:
        return released
    spec, r = net.spec, net.spec.space.resolutions
    write_entry(
        entry_path,
        name=target,
        description=f"OFA-MobileNetV3 w{spec.width_mult}, {spec.n_classes} classes, r {min(r)}-{max(r)}, "
        f"from training run {run_folder.name}",
        spec=spec,
        preprocessing=config.preprocessing,
        weights=out,
    )
    return dataclasses.replace(released, entry=entry_path)
