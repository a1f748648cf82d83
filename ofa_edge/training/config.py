"""What defines a training run (``TrainConfig``, its ``Phase``\\ s) and the recipe files that set it.

A recipe is a TOML file (format 1) whose top-level keys are ``TrainConfig`` fields and whose
``[[phases]]`` tables are ``Phase`` fields, plus ``format_version`` and a ``description``; keys
left out keep their defaults. ``preprocessing`` is ``"cifar10"``, ``"imagenet"`` or a table
``{mean = [...], std = [...]}``. The class count is never a recipe's: it comes from the data's
class folders. Named recipes ship as ``ofa_edge/training/recipes/NAME.toml``; ``--recipe``
takes such a name or a path to a file of one's own.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ofa_edge.errors import ConfigError, UnknownName
from ofa_edge.supernet import OFAMobileNetV3, SearchSpace
from ofa_edge.supernet.preprocessing import CIFAR10, IMAGENET, Preprocessing
from ofa_edge.supernet.spec import MIT_STAGE_STRIDES, MIT_STEM_STRIDE, MBv3Spec

RECIPE_FORMAT = 1
#: The layout of a training run's ``checkpoint.pt`` (config, model, teacher, optimizer, state).
CHECKPOINT_VERSION = 1
#: ``ofa-edge train``'s recipe when none is named.
DEFAULT_RECIPE = "cifar10-default"
_NAMED_PREPROCESSING = {"cifar10": CIFAR10, "imagenet": IMAGENET}


@dataclass(frozen=True)
class Phase:
    """One stage of progressive shrinking: which choices are elastic, for how long, how fast."""

    name: str
    epochs: int
    lr: float
    ks: tuple[int, ...]
    e: tuple[float, ...]
    d: tuple[int, ...]
    subnets_per_step: int = 1
    distill: bool = True
    sort_channels_stage: int | None = None  # expand phases: OFA's re_organize_middle_weights
    warmup_epochs: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; stored in its checkpoint and checked on resume."""

    width_mult: float = 0.5
    n_classes: int = 10
    resolutions: tuple[int, ...] = (24, 28, 32, 36, 40)
    stem_stride: int = MIT_STEM_STRIDE  # the layout (see MBv3Spec); MIT's unless a recipe says so
    stage_strides: tuple[int, ...] = MIT_STAGE_STRIDES
    batch_size: int = 128  # the global batch: one optimizer step, over all processes
    # Images one forward pass sees (BatchNorm's batch); None: the whole batch of a process
    # (batch_size / processes). Set, a run computes the same whatever the process count.
    micro_batch: int | None = None
    weight_decay: float = 4e-5
    momentum: float = 0.9
    label_smoothing: float = 0.1
    kd_ratio: float = 1.0
    # Held out of the training split, never trained on; None: the split rule of
    # ofa_edge.data.held_out_count (accuracy tables hold out the same images).
    val_images: int | None = None
    train_images: int | None = None  # None: every training image not held out
    # The side images are stored at (and augmented at, before resizing to each step's resolution);
    # None: their own when all share one size, else the largest resolution.
    image_size: int | None = None
    seed: int = 0
    # A new run's starting weights: a registry name, entry file, weights file or training run
    # (``--init``); its classifier is replaced for the data's classes. None: random weights.
    init: str | None = None
    phases: tuple[Phase, ...] = field(default_factory=tuple)
    # How images are normalized (the trained supernet's registry entry must say the same).
    # CIFAR-10's, as before the field existed, so the configs of earlier runs compare equal.
    preprocessing: Preprocessing = CIFAR10

    def spec(self) -> MBv3Spec:
        """The layout of the supernet this run trains."""
        space = SearchSpace(resolutions=self.resolutions)
        return MBv3Spec(self.width_mult, self.n_classes, space, self.stem_stride, self.stage_strides)

    def build(self) -> OFAMobileNetV3:
        """The untrained supernet this run trains (its layout is part of the config)."""
        return OFAMobileNetV3.from_spec(self.spec())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        phases: list[dict[str, Any]] = data["phases"]
        data["phases"] = tuple(Phase(**_tuples(p)) for p in phases)
        for key in ("resolutions", "stage_strides"):
            if key in data:  # stage_strides: absent from runs started before layouts existed
                data[key] = tuple(data[key])
        if "preprocessing" in data:  # absent from runs started before it was configurable
            data["preprocessing"] = Preprocessing(**_tuples(data["preprocessing"]))
        return cls(**data)


def layout_of(spec: MBv3Spec) -> dict[str, Any]:
    """The ``TrainConfig`` fields that fix the supernet trained: those of ``spec``."""
    return {
        "width_mult": spec.width_mult,
        "n_classes": spec.n_classes,
        "resolutions": spec.space.resolutions,
        "stem_stride": spec.stem_stride,
        "stage_strides": spec.stage_strides,
    }


def _tuples(fields: dict[str, Any]) -> dict[str, Any]:
    """JSON's and TOML's lists back as the tuples a frozen config holds."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def recipe_names() -> list[str]:
    """The recipes shipped in the package."""
    folder = resources.files("ofa_edge.training") / "recipes"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_recipe(name_or_path: str | Path) -> TrainConfig:
    """The config of a shipped recipe (by name) or of a recipe file (by path)."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        if str(name_or_path) not in recipe_names():
            raise UnknownName("recipe", str(name_or_path), recipe_names())
        path = Path(str(resources.files("ofa_edge.training") / "recipes" / f"{name_or_path}.toml"))
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(
            f"cannot read recipe {path}: {err}", hint="pass a shipped recipe's name or a TOML recipe file"
        ) from None
    return _config_from_recipe(data, path)


def _config_from_recipe(data: dict[str, Any], path: Path) -> TrainConfig:
    """Check a parsed recipe's keys and values and turn it into a config."""
    if data.pop("format_version", None) != RECIPE_FORMAT:
        raise ConfigError(
            f"recipe {path} is not format_version = {RECIPE_FORMAT}",
            hint=f"start it with format_version = {RECIPE_FORMAT} (see the shipped recipes)",
        )
    data.pop("description", None)
    known = {f.name for f in dataclasses.fields(TrainConfig)} - {"n_classes"}
    _check_keys(path, "recipe", data, known)
    phases = data.get("phases")
    if not isinstance(phases, list) or not phases:
        raise ConfigError(f"recipe {path} has no [[phases]]", hint="add at least one [[phases]] table")
    phase_keys = {f.name for f in dataclasses.fields(Phase)}
    for i, phase in enumerate(phases):
        _check_keys(path, f"phase {i + 1}", phase, phase_keys)
    preprocessing = data.get("preprocessing", "cifar10")
    if isinstance(preprocessing, str):
        if preprocessing not in _NAMED_PREPROCESSING:
            raise UnknownName("preprocessing", preprocessing, list(_NAMED_PREPROCESSING))
        data["preprocessing"] = dataclasses.asdict(_NAMED_PREPROCESSING[preprocessing])
    try:
        return TrainConfig.from_dict(data)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"recipe {path}: {err}", hint="compare it with a shipped recipe") from None


def _check_keys(path: Path, where: str, table: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"recipe {path}: {where} has unknown key(s) {', '.join(unknown)}",
            hint=f"known keys: {', '.join(sorted(known))}",
        )
