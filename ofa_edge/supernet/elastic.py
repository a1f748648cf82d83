"""What every supernet of MBConv stages shares: the static net's skeleton and the elastic
supernet's machinery (arch selection, subnet extraction, strict checkpoint loading).

The API is MIT once-for-all's (``set_active_subnet``, ``sample_active_subnet``,
``get_active_subnet``, ``get_active_net_config``), with every argument validated. A family adds
its tail (the layers after the blocks) as a mixin of :class:`NetBody`, then pairs it with
:class:`StaticNet` and :class:`ElasticSupernet` (``ofa_mbv3``, ``ofa_proxyless``).
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import random
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import nn

from ofa_edge.errors import CheckpointError, ConfigError
from ofa_edge.supernet.family import FamilySpec, spec_from_dict
from ofa_edge.supernet.layers import ConvBNAct, ElasticMBConv, MBConv, ResidualBlock
from ofa_edge.supernet.space import ArchConfig, SearchSpace
from ofa_edge.supernet.spec import BlockSpec, MBConvSpec


class NetBody(nn.Module):
    """Stem conv, blocks, then the family's tail: the forward pass of supernets and subnets."""

    spec: MBConvSpec
    first_conv: ConvBNAct
    blocks: nn.ModuleList
    dropout_rate: float
    #: The modules after the blocks, in state-dict order (copied whole into extracted subnets).
    TAIL: ClassVar[tuple[str, ...]]

    def _build_head(self, spec: MBConvSpec) -> None:
        self.first_conv = ConvBNAct(3, spec.first_conv_width, 3, spec.stem_stride, act=spec.stem_act)

    def _build_tail(self, spec: MBConvSpec, last_block_width: int, dropout_rate: float) -> None:
        raise NotImplementedError

    def _tail(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _active_blocks(self) -> list[nn.Module]:
        return list(self.blocks)

    def _set_bn(self, bn_param: tuple[float | None, float]) -> None:
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum, m.eps = bn_param

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for block in self._active_blocks():
            x = block(x)
        return self._tail(x)


class StaticNet(NetBody):
    """A static subnet: plain conv/BN layers, no elastic machinery."""

    def __init__(self, spec: MBConvSpec, blocks: list[BlockSpec], dropout_rate: float = 0.0) -> None:
        super().__init__()
        self.spec, self.block_specs = spec, list(blocks)
        self._build_head(spec)
        self.blocks = nn.ModuleList(ResidualBlock(MBConv(b), b.shortcut) for b in blocks)
        self._build_tail(spec, blocks[-1].cout, dropout_rate)
        self.dropout_rate = dropout_rate
        self._set_bn(spec.bn_param)

    @staticmethod
    def build_from_config(config: Mapping[str, Any]) -> nn.Module:
        """Rebuild (without weights) from ``ElasticSupernet.get_active_net_config()``."""
        spec = spec_from_dict(config["supernet"])
        if not isinstance(spec, MBConvSpec):
            raise ConfigError(f"net config of a {spec.family} supernet: not an MBConv family's")
        arch = ArchConfig.from_dict(config["arch"]).validate(spec.space)
        return spec.static_net(spec.blocks(arch), config.get("dropout_rate", 0.0))


SpecT = TypeVar("SpecT", bound=FamilySpec)


class SubnetSelection(nn.Module, Generic[SpecT]):
    """What every family's elastic supernet offers: subnet picks over its space (``set_arch``,
    max, min, random) and the active subnet as a static net."""

    spec: SpecT

    @property
    @abc.abstractmethod
    def space(self) -> Any:
        """The family's search space (``sample``, ``max_arch``, ``min_arch``)."""

    @property
    @abc.abstractmethod
    def active_arch(self) -> Any:
        """The active subnet, resolution included."""

    @abc.abstractmethod
    def set_arch(self, arch: Any) -> None:
        """Select the subnet ``arch`` describes (validated)."""

    @abc.abstractmethod
    def get_active_subnet(self, preserve_weight: bool = True) -> nn.Module:
        """The active subnet as a static net (weights copied unless told not to)."""

    def set_max_net(self) -> None:
        self.set_arch(self.space.max_arch(self.active_arch.r))

    def set_min_net(self) -> None:
        self.set_arch(self.space.min_arch(self.active_arch.r))

    def sample_active_subnet(self, rng: random.Random | None = None) -> dict[str, Any]:
        """Activate a uniformly random subnet and return its arch dict (MIT's keys plus ``r``)."""
        arch = self.space.sample(rng)
        self.set_arch(arch)
        return dict(arch.to_dict())


class ElasticSupernet(SubnetSelection[MBConvSpec], NetBody):
    """A weight-sharing supernet: elastic kernel, expand ratio and depth (MIT-compatible)."""

    block_group_info: list[list[int]]
    _arch: ArchConfig

    def _build_supernet(
        self, spec: MBConvSpec, dropout_rate: float, bn_param: tuple[float, float] | None
    ) -> None:
        """Build every layer of ``spec`` at its largest, and activate the largest subnet."""
        self.spec, self.dropout_rate = spec, dropout_rate
        space = spec.space
        self._build_head(spec)
        first = spec.first_block(0)
        blocks: list[nn.Module] = [ResidualBlock(MBConv(first), first.shortcut)]
        self.block_group_info = []
        cin = first.cout
        for stage, depth in zip(spec.stages, space.stage_max_depths):
            self.block_group_info.append(list(range(len(blocks), len(blocks) + depth)))
            for i in range(depth):
                stride = stage.stride if i == 0 else 1
                elastic = ElasticMBConv(
                    cin, stage.width, space.ks_list, space.expand_ratio_list, stride, stage.act, stage.se
                )
                blocks.append(ResidualBlock(elastic, stride == 1 and cin == stage.width))
                cin = stage.width
        self.blocks = nn.ModuleList(blocks)
        self._build_tail(spec, cin, dropout_rate)
        self._set_bn(bn_param or spec.bn_param)
        self._arch = space.max_arch()
        self._apply_arch()

    # --- the search space ----------------------------------------------------------------

    @property
    def space(self) -> SearchSpace:
        return self.spec.space

    @property
    def ks_list(self) -> list[int]:
        return list(self.space.ks_list)

    @property
    def expand_ratio_list(self) -> list[float]:
        return list(self.space.expand_ratio_list)

    @property
    def depth_list(self) -> list[int]:
        return list(self.space.depth_list)

    @property
    def runtime_depth(self) -> list[int]:
        return list(self._arch.d)

    @property
    def active_arch(self) -> ArchConfig:
        """The active subnet, resolution included."""
        return self._arch

    # --- set, sample and get active subnets ------------------------------------------------

    def set_active_subnet(self, ks: Any = None, e: Any = None, d: Any = None, **kwargs: Any) -> None:
        """Select a subnet; each of ks/e/d is a scalar (all blocks) or a full list, None keeps it.

        ``r``/``image_size`` (the resolution) and ``wid=None`` are accepted so OFA's arch dicts
        can be splatted in; any other keyword is an error, not silently ignored.
        """
        r = self._arch.r
        for key, value in kwargs.items():
            if key in ("r", "image_size"):
                one = isinstance(value, (list, tuple)) and len(value) == 1
                r = value[0] if one else value
            elif key == "wid" and value is None:
                continue
            else:
                raise ConfigError(
                    f"set_active_subnet: unexpected argument {key}={value!r}; "
                    "expected ks, e, d (and optionally r)"
                )
        space = self.space
        self._arch = ArchConfig(
            ks=self._arch.ks if ks is None else space.expand("ks", ks),
            e=self._arch.e if e is None else space.expand("e", e),
            d=self._arch.d if d is None else space.expand("d", d),
            r=space.check_resolution(r),
        )
        self._apply_arch()

    def set_arch(self, arch: ArchConfig) -> None:
        """Select the subnet described by ``arch`` (validated)."""
        arch = arch.validate(self.space)
        self.set_active_subnet(arch.ks, arch.e, arch.d, r=arch.r)

    def _elastic_blocks(self) -> list[ElasticMBConv]:
        """Every block after the fixed first one, as the elastic block it holds."""
        return [_elastic(block) for block in self.blocks[1:]]

    def _apply_arch(self) -> None:
        for slot, block in enumerate(self._elastic_blocks()):
            block.active = (self._arch.ks[slot], self._arch.e[slot])

    def re_organize_middle_weights(self, expand_ratio_stage: int = 0) -> None:
        """Sort every elastic block's hidden channels by importance (before expand training)."""
        for block in self._elastic_blocks():
            block.sort_channels(expand_ratio_stage)

    def _active_blocks(self) -> list[nn.Module]:
        active = [self.blocks[0]]
        for group, depth in zip(self.block_group_info, self._arch.d):
            active.extend(self.blocks[i] for i in group[:depth])
        return active

    def active_block_specs(self) -> list[BlockSpec]:
        return self.spec.blocks(self._arch)

    def get_active_subnet(self, preserve_weight: bool = True) -> StaticNet:
        """The active subnet as a static net (weights copied unless told not to)."""
        specs = self.active_block_specs()
        net = self.spec.static_net(specs, self.dropout_rate)
        assert isinstance(net, StaticNet)
        if preserve_weight:
            for fixed in ("first_conv", *self.TAIL):
                setattr(net, fixed, copy.deepcopy(getattr(self, fixed)))
            net.blocks[0] = copy.deepcopy(self.blocks[0])
            for i, (block, spec) in enumerate(zip(self._active_blocks()[1:], specs[1:]), 1):
                net.blocks[i] = ResidualBlock(_elastic(block).extract(spec), spec.shortcut)
        net._set_bn(self._bn_param())
        return net.train(self.training)

    def _bn_param(self) -> tuple[float | None, float]:
        bn = self.first_conv.bn
        assert bn is not None
        return bn.momentum, bn.eps

    def get_active_net_config(self) -> dict[str, Any]:
        """A JSON-able description of the active subnet; ``StaticNet.build_from_config`` reads it."""
        return {
            "name": self.spec.static_name,
            "supernet": self.spec.to_dict(),
            "arch": self._arch.to_dict(),
            "dropout_rate": self.dropout_rate,
            "bn": dict(zip(("momentum", "eps"), self._bn_param())),
            "blocks": [dataclasses.asdict(b) for b in self.active_block_specs()],
        }

    # --- checkpoints ---------------------------------------------------------------------------

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Load a state dict (official OFA checkpoints included) or fail with a clear summary."""
        state_dict = mit_state_dict(state_dict)
        self._check_layout(state_dict)
        check_fits(
            self.state_dict(),
            state_dict,
            strict,
            f"checkpoint does not fit {self._describe()}",
            "build the supernet with the width/classes/space the checkpoint was saved with",
        )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _describe(self) -> str:
        """The constructor call that fixes the tensor shapes, for error messages."""
        return (
            f"{type(self).__name__}(width_mult={self.spec.width_mult}, n_classes={self.spec.n_classes}, "
            f"ks_list={self.ks_list}, expand_ratio_list={self.expand_ratio_list}, "
            f"depth_list={self.depth_list})"
        )

    def _check_layout(self, state_dict: Mapping[str, Any]) -> None:
        """Refuse weights whose shapes fit but whose layout differs (a family's own check)."""


def mit_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A state dict (bare or under ``"state_dict"``, as MIT saves them) with MIT's older block key
    ``.mobile_inverted_conv.`` renamed to today's ``.conv.``."""
    if isinstance(state_dict.get("state_dict"), Mapping):
        state_dict = state_dict["state_dict"]
    return {k.replace(".mobile_inverted_conv.", ".conv."): v for k, v in state_dict.items()}


def check_fits(
    own: Mapping[str, torch.Tensor], given: Mapping[str, Any], strict: bool, what: str, hint: str
) -> None:
    """Raise ``CheckpointError`` (``what``: the summary of the problems, ``hint``: the way out)
    unless ``given`` fits a model whose state dict is ``own``."""
    problems = state_dict_mismatches(own, given, strict)
    if problems:
        raise CheckpointError(f"{what}: " + "; ".join(problems), hint=hint)


def state_dict_mismatches(
    own: Mapping[str, torch.Tensor], given: Mapping[str, Any], strict: bool
) -> list[str]:
    """Human summaries of missing, unexpected and wrongly shaped entries (at most 3 of each)."""

    def few(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

    problems = []
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    if strict and missing:
        problems.append(f"{len(missing)} missing key(s): {few(missing)}")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {few(unexpected)}")
    shapes = [
        f"{k} is {tuple(given[k].shape)} in the checkpoint, {tuple(v.shape)} in the model"
        for k, v in own.items()
        if k in given and hasattr(given[k], "shape") and tuple(given[k].shape) != tuple(v.shape)
    ]
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {few(shapes)}")
    return problems


def _elastic(block: nn.Module) -> ElasticMBConv:
    """The elastic block inside one of the supernet's residual blocks."""
    assert isinstance(block, ResidualBlock) and isinstance(block.conv, ElasticMBConv)
    return block.conv
