"""The elastic search space and the architecture configs that live in it.

``SearchSpace`` says which kernel sizes, expand ratios, depths and resolutions a supernet has;
``ArchConfig`` is one subnet (OFA's ``{"ks": [20], "e": [20], "d": [5], "r": int}``), validated
against a space at every entry point so a bad value fails with its field, index and the allowed set.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofa_edge.errors import ConfigError
from ofa_edge.files import write_json
from ofa_edge.supernet.family import read_arch

#: OFA-MBv3's resolutions: 128 to 224 in steps of 4.
OFA_RESOLUTIONS: tuple[int, ...] = tuple(range(128, 225, 4))


def _as_tuple(field: str, values: Any) -> tuple:
    if isinstance(values, (int, float)):
        return (values,)
    try:
        return tuple(values)
    except TypeError:
        raise ConfigError(f"{field}: expected a number or a list, got {values!r}") from None


@dataclass(frozen=True)
class SearchSpace:
    """The elastic dimensions of a supernet of MBConv stages.

    Every stage takes its depth from ``depth_list`` unless ``stage_depths`` gives each stage its
    own choices (ProxylessNAS: the last stage has exactly one block, so its choices are ``(1,)``);
    a stage has as many block slots as its largest depth.
    """

    ks_list: tuple[int, ...] = (3, 5, 7)
    expand_ratio_list: tuple[float, ...] = (3, 4, 6)
    depth_list: tuple[int, ...] = (2, 3, 4)
    resolutions: tuple[int, ...] = OFA_RESOLUTIONS
    n_stages: int = 5
    stage_depths: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        for name in ("ks_list", "expand_ratio_list", "depth_list", "resolutions"):
            values = tuple(sorted(_as_tuple(name, getattr(self, name))))
            if not values:
                raise ConfigError(f"{name} is empty")
            object.__setattr__(self, name, values)
        for k in self.ks_list:
            if k % 2 == 0 or k < 1:
                raise ConfigError(f"ks_list: kernel size {k} must be odd and positive")
        stages = tuple(tuple(sorted(_as_tuple("stage_depths", d))) for d in self.stage_depths)
        object.__setattr__(self, "stage_depths", stages)
        if stages and len(stages) != self.n_stages:
            raise ConfigError(f"stage_depths: {len(stages)} stages, expected n_stages={self.n_stages}")
        if min(d for depths in self.depth_lists for d in depths) < 1:
            raise ConfigError(f"depth_list: depths must be >= 1, got {[list(d) for d in self.depth_lists]}")

    @property
    def depth_lists(self) -> tuple[tuple[int, ...], ...]:
        """The depth choices of each stage."""
        return self.stage_depths or (self.depth_list,) * self.n_stages

    @property
    def stage_max_depths(self) -> tuple[int, ...]:
        """Block slots per stage (each stage's largest depth)."""
        return tuple(max(d) for d in self.depth_lists)

    @property
    def max_depth(self) -> int:
        return max(self.stage_max_depths)

    @property
    def n_blocks(self) -> int:
        """Elastic block slots (OFA-MBv3: 5 stages x 4 = 20); ks and e have one entry each."""
        return sum(self.stage_max_depths)

    @property
    def slot_stages(self) -> tuple[int, ...]:
        """The stage of each block slot."""
        return tuple(s for s, n in enumerate(self.stage_max_depths) for _ in range(n))

    @property
    def slot_positions(self) -> tuple[int, ...]:
        """Each block slot's position in its stage (0: the stage's first block)."""
        return tuple(i for n in self.stage_max_depths for i in range(n))

    def stage_slots(self, stage: int) -> range:
        """The block slots of ``stage``."""
        start = sum(self.stage_max_depths[:stage])
        return range(start, start + self.stage_max_depths[stage])

    def rules(self) -> list[tuple[str, tuple[tuple, ...]]]:
        """(field, allowed values of each entry) for each list field of an arch."""
        return [
            ("ks", (self.ks_list,) * self.n_blocks),
            ("e", (self.expand_ratio_list,) * self.n_blocks),
            ("d", self.depth_lists),
        ]

    def check_resolution(self, r: int) -> int:
        if r not in self.resolutions:
            raise ConfigError(
                f"r={r} is not a resolution of this space; allowed: {_describe(self.resolutions)}"
            )
        return r

    def expand(self, field: str, value: Any) -> tuple:
        """A scalar or a list for ``field`` -> a validated full-length tuple (OFA's val2list).

        A scalar depth sets every stage whose depth is elastic; a stage of one fixed depth keeps it.
        """
        allowed = next(a for f, a in self.rules() if f == field)
        length = len(allowed)
        values = _as_tuple(field, value)
        if len(values) == 1 and length > 1 and not isinstance(value, (list, tuple)):
            values = tuple(a[0] if len(a) == 1 else values[0] for a in allowed)
        if len(values) != length:
            raise ConfigError(f"{field}: {len(values)} entries, expected {length}")
        for i, (v, choices) in enumerate(zip(values, allowed)):
            if v not in choices:
                raise ConfigError(f"{field}[{i}]={v!r} is not in {list(choices)}")
        return tuple(values)

    def sample(self, rng: random.Random | None = None) -> ArchConfig:
        """A uniformly random subnet (every block and stage drawn independently)."""
        rng = rng or random.Random()
        return ArchConfig(
            ks=tuple(rng.choice(self.ks_list) for _ in range(self.n_blocks)),
            e=tuple(rng.choice(self.expand_ratio_list) for _ in range(self.n_blocks)),
            d=tuple(rng.choice(depths) for depths in self.depth_lists),
            r=rng.choice(self.resolutions),
        )

    def max_arch(self, r: int | None = None) -> ArchConfig:
        return self._uniform(max, r if r is not None else max(self.resolutions))

    def min_arch(self, r: int | None = None) -> ArchConfig:
        return self._uniform(min, r if r is not None else min(self.resolutions))

    def _uniform(self, pick: Any, r: int) -> ArchConfig:
        return ArchConfig(
            ks=(pick(self.ks_list),) * self.n_blocks,
            e=(pick(self.expand_ratio_list),) * self.n_blocks,
            d=tuple(pick(depths) for depths in self.depth_lists),
            r=self.check_resolution(r),
        )

    def uniform_arch(self, k: int, e: float, r: int) -> ArchConfig:
        """Every slot at kernel ``k`` and expand ``e``, every stage at its largest depth: a
        subnet running every slot, so uniform archs over (k, e) cover every block shape."""
        return ArchConfig((k,) * self.n_blocks, (e,) * self.n_blocks, self.stage_max_depths, r)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; ``stage_depths`` only when set, so uniform spaces stay as they were."""
        data: dict[str, Any] = {
            "ks_list": list(self.ks_list),
            "expand_ratio_list": list(self.expand_ratio_list),
            "depth_list": list(self.depth_list),
            "resolutions": list(self.resolutions),
            "n_stages": self.n_stages,
        }
        if self.stage_depths:
            data["stage_depths"] = [list(d) for d in self.stage_depths]
        return data


def _describe(values: Sequence[int]) -> str:
    steps = {b - a for a, b in itertools.pairwise(values)}
    if len(values) > 3 and len(steps) == 1:
        return f"{values[0]}..{values[-1]} step {steps.pop()}"
    return str(list(values))


_ARCH_KEYS = {"ks", "e", "d", "r", "image_size", "wid"}


@dataclass(frozen=True)
class ArchConfig:
    """One subnet: kernel size and expand ratio per block slot, depth per stage, resolution.

    Entries of ``ks``/``e`` for blocks beyond a stage's depth are kept (as OFA does) but unused.
    """

    ks: tuple[int, ...]
    e: tuple[float, ...]
    d: tuple[int, ...]
    r: int

    def validate(self, space: SearchSpace) -> ArchConfig:
        """Return the normalized arch, or raise ``ConfigError`` naming the bad field."""
        return ArchConfig(
            ks=space.expand("ks", list(self.ks)),
            e=space.expand("e", list(self.e)),
            d=space.expand("d", list(self.d)),
            r=space.check_resolution(self.r),
        )

    def active_blocks(self, space: SearchSpace) -> list[int]:
        """Indices (into the ks/e lists) of the block slots this arch actually runs."""
        return [slot for stage, depth in enumerate(self.d) for slot in space.stage_slots(stage)[:depth]]

    def to_dict(self) -> dict[str, Any]:
        return {"ks": list(self.ks), "e": list(self.e), "d": list(self.d), "r": self.r}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, default_r: int | None = None) -> ArchConfig:
        """Build from OFA-style dicts: ``r`` may be ``image_size`` or a one-element list."""
        if not isinstance(data, dict):
            raise ConfigError(f"arch: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - _ARCH_KEYS)
        if unknown:
            raise ConfigError(f"arch: unknown field(s) {unknown}; allowed: ks, e, d, r (or image_size)")
        missing = [k for k in ("ks", "e", "d") if k not in data]
        if missing:
            raise ConfigError(f"arch: missing field(s) {missing}")
        if data.get("wid") is not None:
            raise ConfigError(f"arch: wid={data['wid']!r}: width is not elastic in this supernet")
        r = data.get("r", data.get("image_size", default_r))
        if isinstance(r, (list, tuple)):
            if len(r) != 1:
                raise ConfigError(f"arch: r={r!r}: expected one resolution")
            r = r[0]
        if r is None:
            raise ConfigError("arch: missing field r (the input resolution; OFA calls it image_size)")
        if not isinstance(r, int) or isinstance(r, bool):
            raise ConfigError(f"arch: r={r!r} is not an integer")
        return cls(
            ks=_as_tuple("ks", data["ks"]),
            e=_as_tuple("e", data["e"]),
            d=_as_tuple("d", data["d"]),
            r=r,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"arch: not valid JSON ({err})") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> ArchConfig:
        """Read an arch JSON file (what ``ofa-edge search --out`` writes)."""
        return read_arch(path, cls.from_dict)

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())
