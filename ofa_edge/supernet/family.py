"""Supernet families: what every consumer (latency tables, search, export, measurement) asks of
a supernet, so that adding a family is a new module, not a branch through the pipeline.

A family's *spec* (:class:`FamilySpec`) is the frozen description of one supernet: its search
space, the ops a subnet runs (as latency-table keys, each with its MACs, parameters and peak
activations), the micro-model module of each op, and the elastic network it builds. Specs are
found by name (``register_family``) and read back from their ``to_dict`` output by
:func:`spec_from_dict`; a description without a ``"family"`` key is OFA-MobileNetV3's (files
written before families existed).
"""

from __future__ import annotations

import abc
import dataclasses
import difflib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from ofa_edge.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from ofa_edge.supernet.counting import Counts
    from ofa_edge.supernet.elastic import SubnetSelection
    from ofa_edge.supernet.spec import BlockSpec

#: The family of descriptions without a ``"family"`` key.
DEFAULT_FAMILY = "mbv3"
#: Modules defining the built-in families, imported when a family is first looked up.
_BUILTIN_MODULES = ("ofa_edge.supernet.spec", "ofa_edge.supernet.proxyless", "ofa_edge.supernet.resnet_spec")


@dataclass(frozen=True, order=True)
class Op:
    """One latency-table entry's operation, keyed in MIT's format.

    ``kind`` is MIT's layer name ("Conv", "expanded_conv", ...); ``fields`` are the key's parts
    after the shapes (``expand:144`` ...), ``block`` the block an ``expanded_conv`` runs and
    ``slot`` the elastic block slot it fills (None: a fixed op).
    """

    kind: str
    input: tuple[int, ...]
    output: tuple[int, ...]
    fields: tuple[tuple[str, int], ...] = ()
    block: BlockSpec | None = field(default=None, compare=False)
    slot: int | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        parts = [
            self.kind,
            "input:" + "x".join(map(str, self.input)),
            "output:" + "x".join(map(str, self.output)),
        ]
        return "-".join(parts + [f"{name}:{value}" for name, value in self.fields])


class Arch(Protocol):
    """What every family's arch is: a frozen dataclass with an input resolution ``r`` that
    validates against its family's space and writes MIT's dict keys."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def r(self) -> int: ...

    def validate(self, space: Any) -> Arch: ...

    def to_dict(self) -> dict[str, Any]: ...


ArchT = TypeVar("ArchT", bound=Arch)


def at_resolution(arch: ArchT, r: int) -> ArchT:
    """``arch`` with input resolution ``r`` (unvalidated), whatever its family."""
    return dataclasses.replace(arch, r=r)


def read_arch(path: str | Path, parse: Callable[[Any], ArchT]) -> ArchT:
    """The arch of JSON file ``path`` as ``parse`` reads its object; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read arch file {path}: {err.strerror}") from None
    try:
        return parse(json.loads(text))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: arch: not valid JSON ({err})") from None
    except ConfigError as err:
        raise ConfigError(f"{path}: {err.message}", hint=err.hint) from None


class FamilySpec(abc.ABC):
    """The fixed description of one supernet of a family (frozen dataclasses implement it).

    Its ``space`` and archs are the family's own types (MBConv families: ``SearchSpace`` and
    ``ArchConfig``; OFA-ResNet: ``ResNetSpace`` and ``ResNetArch``); every space offers
    ``resolutions``, ``check_resolution``, ``sample``, ``max_arch``, ``min_arch`` and ``to_dict``,
    every arch ``r``, ``validate(space)`` and ``to_dict``.
    """

    family: ClassVar[str]
    #: The class name of its static subnets, as MIT's net configs name them.
    static_name: ClassVar[str]
    space: Any
    n_classes: int

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-able, with ``"family"`` (left out for the default family, whose files predate it)."""

    @classmethod
    @abc.abstractmethod
    def from_dict(cls, data: dict[str, Any]) -> FamilySpec:
        """The spec of ``to_dict`` output (keys of other records, like a table's ``id``, ignored)."""

    @abc.abstractmethod
    def arch_from_dict(self, data: Any, *, default_r: int | None = None) -> Any:
        """An arch of this family from its dict (MIT's keys; ``r`` or ``image_size``)."""

    @abc.abstractmethod
    def ops(self, arch: Any) -> list[Op]:
        """The ops ``arch`` runs, in order; its latency is (about) the sum of theirs."""

    @abc.abstractmethod
    def op_counts(self, op: Op) -> Counts:
        """MACs and parameters of one op (as MIT's counters count them)."""

    @abc.abstractmethod
    def op_peak(self, op: Op) -> int:
        """Peak live activation elements while ``op`` runs (batch 1)."""

    @abc.abstractmethod
    def op_module(self, op: Op) -> nn.Module:
        """``op`` as a standalone module taking a (1, C, H, W) input (a latency micro-model)."""

    @abc.abstractmethod
    def build(self, dropout_rate: float = 0.0) -> SubnetSelection[Any]:
        """The (untrained) elastic supernet of this spec."""

    @abc.abstractmethod
    def distinct_ops(self, r: int) -> list[Op]:
        """Every op some subnet runs at resolution ``r`` (repeats allowed; a latency table's rows)."""

    def checked(self, arch: Arch, r: int | None = None) -> Any:
        """``arch`` at resolution ``r`` (default: its own), validated against the space."""
        return (arch if r is None else at_resolution(arch, r)).validate(self.space)

    def load_arch(self, path: str | Path, r: int | None = None) -> Any:
        """The arch of JSON file ``path`` (MIT's keys) at resolution ``r`` (default: the file's),
        validated; a bad file is a one-line ``ConfigError`` naming it, the field and what is allowed."""
        return read_arch(path, lambda data: self.checked(self.arch_from_dict(data, default_r=r), r))

    def count(self, arch: Any) -> Counts:
        """MACs and params of ``arch`` (validated against the space) at resolution ``arch.r``."""
        from ofa_edge.supernet.counting import Counts

        per_op = [self.op_counts(op) for op in self.ops(arch.validate(self.space))]
        return Counts(sum(c.macs for c in per_op), sum(c.params for c in per_op))

    def peak_activation(self, arch: Any) -> int:
        """Peak live activation elements of ``arch`` (batch 1): the largest of its ops' (the scalar
        reference of the search's vectorized peak memory)."""
        return max(self.op_peak(op) for op in self.ops(arch.validate(self.space)))


SpecT = TypeVar("SpecT", bound=type[FamilySpec])
_FAMILIES: dict[str, type[FamilySpec]] = {}


def register_family(cls: SpecT) -> SpecT:
    """Register a spec class under its ``family`` name (a duplicate is an error)."""
    if cls.family in _FAMILIES:
        raise ConfigError(f"supernet family {cls.family!r} registered twice ({cls.__module__})")
    _FAMILIES[cls.family] = cls
    return cls


def families() -> dict[str, type[FamilySpec]]:
    """Every registered family by name (the built-in ones imported on first call)."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    return dict(_FAMILIES)


def spec_from_dict(data: dict[str, Any]) -> FamilySpec:
    """The spec a ``to_dict`` output (or a table's, entry file's or run's record) describes."""
    name = data.get("family", DEFAULT_FAMILY)
    known = families()
    if name not in known:
        close = difflib.get_close_matches(str(name), list(known), n=1)
        raise ConfigError(
            f"unknown supernet family {name!r}; known: {', '.join(sorted(known))}",
            hint=f"did you mean {close[0]!r}?" if close else "write one of the known families",
        )
    return known[name].from_dict(data)
