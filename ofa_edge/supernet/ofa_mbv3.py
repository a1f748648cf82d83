"""OFA-MobileNetV3: the weight-sharing supernet and the static subnets extracted from it.

The API is MIT once-for-all's (``set_active_subnet``, ``sample_active_subnet``,
``get_active_subnet``, ``get_active_net_config``), with every argument validated, and
``load_state_dict`` takes the official checkpoints strictly.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ofa_edge.errors import CheckpointError, ConfigError
from ofa_edge.supernet.layers import (
    ConvBNAct,
    ElasticMBConv,
    LinearLayer,
    MBConv,
    ResidualBlock,
)
from ofa_edge.supernet.space import OFA_RESOLUTIONS, ArchConfig, SearchSpace
from ofa_edge.supernet.spec import MIT_STAGE_STRIDES, MIT_STEM_STRIDE, BlockSpec, MBv3Spec

#: State-dict key of a non-MIT layout's strides, so weights cannot load into another layout
#: (same tensor shapes) unnoticed; MIT's layout has none, so official checkpoints load strictly.
LAYOUT_KEY = "layout_strides"


class _MBv3Body(nn.Module):
    """What the supernet and a static subnet share: the fixed head and tail around the blocks."""

    blocks: nn.ModuleList

    def _build_head(self, spec: MBv3Spec) -> None:
        self.first_conv = ConvBNAct(3, spec.first_conv_width, 3, spec.stem_stride, act="h_swish")

    def _build_tail(self, spec: MBv3Spec, last_block_width: int, dropout_rate: float) -> None:
        self.final_expand_layer = ConvBNAct(last_block_width, spec.final_expand_width, act="h_swish")
        self.feature_mix_layer = ConvBNAct(
            spec.final_expand_width, spec.last_channel, act="h_swish", use_bn=False
        )
        self.classifier = LinearLayer(spec.last_channel, spec.n_classes, dropout_rate)

    def _active_blocks(self) -> list[nn.Module]:
        return list(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for block in self._active_blocks():
            x = block(x)
        x = self.final_expand_layer(x)
        x = x.mean((2, 3), keepdim=True)
        x = self.feature_mix_layer(x)
        return self.classifier(torch.flatten(x, 1))


class MobileNetV3(_MBv3Body):
    """A static MobileNetV3 subnet: plain conv/BN layers, no elastic machinery."""

    def __init__(self, spec: MBv3Spec, blocks: list[BlockSpec], dropout_rate: float = 0.0) -> None:
        super().__init__()
        self.spec, self.block_specs = spec, list(blocks)
        self._build_head(spec)
        self.blocks = nn.ModuleList(ResidualBlock(MBConv(b), b.shortcut) for b in blocks)
        self._build_tail(spec, blocks[-1].cout, dropout_rate)
        self.dropout_rate = dropout_rate

    @staticmethod
    def build_from_config(config: Mapping[str, Any]) -> MobileNetV3:
        """Rebuild (without weights) from ``OFAMobileNetV3.get_active_net_config()``."""
        spec = MBv3Spec.from_dict(config["supernet"])
        arch = ArchConfig.from_dict(config["arch"]).validate(spec.space)
        return MobileNetV3(spec, spec.blocks(arch), config.get("dropout_rate", 0.0))


class OFAMobileNetV3(_MBv3Body):
    """The OFA-MobileNetV3 supernet (elastic kernel, expand ratio, depth; MIT-compatible)."""

    def __init__(
        self,
        n_classes: int = 1000,
        width_mult: float = 1.0,
        ks_list: tuple[int, ...] = (3, 5, 7),
        expand_ratio_list: tuple[float, ...] = (3, 4, 6),
        depth_list: tuple[int, ...] = (2, 3, 4),
        dropout_rate: float = 0.0,
        resolutions: tuple[int, ...] = OFA_RESOLUTIONS,
        bn_param: tuple[float, float] = (0.1, 1e-5),
        stem_stride: int = MIT_STEM_STRIDE,
        stage_strides: tuple[int, ...] = MIT_STAGE_STRIDES,
    ) -> None:
        super().__init__()
        space = SearchSpace(ks_list, expand_ratio_list, depth_list, resolutions)
        self.spec = MBv3Spec(width_mult, n_classes, space, stem_stride, stage_strides)
        if not self.spec.is_mit_layout:
            self.register_buffer(LAYOUT_KEY, torch.tensor([stem_stride, *self.spec.stage_strides]))
        self.dropout_rate = dropout_rate
        self._build_head(self.spec)
        first = self.spec.first_block(0)
        blocks: list[nn.Module] = [ResidualBlock(MBConv(first), first.shortcut)]
        self.block_group_info: list[list[int]] = []
        cin = first.cout
        for stage in self.spec.stages:
            self.block_group_info.append(list(range(len(blocks), len(blocks) + space.max_depth)))
            for i in range(space.max_depth):
                stride = stage.stride if i == 0 else 1
                elastic = ElasticMBConv(
                    cin,
                    stage.width,
                    space.ks_list,
                    space.expand_ratio_list,
                    stride,
                    stage.act,
                    stage.se,
                )
                blocks.append(ResidualBlock(elastic, stride == 1 and cin == stage.width))
                cin = stage.width
        self.blocks = nn.ModuleList(blocks)
        self._build_tail(self.spec, cin, dropout_rate)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum, m.eps = bn_param
        self._arch = space.max_arch()
        self._apply_arch()

    @classmethod
    def from_spec(cls, spec: MBv3Spec) -> OFAMobileNetV3:
        """The (untrained) supernet of ``spec``: its width, classes, space and layout."""
        space = spec.space
        return cls(
            n_classes=spec.n_classes,
            width_mult=spec.width_mult,
            ks_list=space.ks_list,
            expand_ratio_list=space.expand_ratio_list,
            depth_list=space.depth_list,
            resolutions=space.resolutions,
            stem_stride=spec.stem_stride,
            stage_strides=spec.stage_strides,
        )

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

    def set_max_net(self) -> None:
        self.set_arch(self.space.max_arch(self._arch.r))

    def set_min_net(self) -> None:
        self.set_arch(self.space.min_arch(self._arch.r))

    def sample_active_subnet(self, rng: random.Random | None = None) -> dict[str, Any]:
        """Activate a uniformly random subnet and return its arch dict (OFA keys plus ``r``)."""
        arch = self.space.sample(rng)
        self.set_arch(arch)
        return arch.to_dict()

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

    def get_active_subnet(self, preserve_weight: bool = True) -> MobileNetV3:
        """The active subnet as a static ``MobileNetV3`` (weights copied unless told not to)."""
        specs = self.active_block_specs()
        net = MobileNetV3(self.spec, specs, self.dropout_rate)
        if preserve_weight:
            for fixed in ("first_conv", "final_expand_layer", "feature_mix_layer", "classifier"):
                setattr(net, fixed, copy.deepcopy(getattr(self, fixed)))
            net.blocks[0] = copy.deepcopy(self.blocks[0])
            for i, (block, spec) in enumerate(zip(self._active_blocks()[1:], specs[1:]), 1):
                net.blocks[i] = ResidualBlock(_elastic(block).extract(spec), spec.shortcut)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum, m.eps = self._bn_param()
        return net.train(self.training)

    def _bn_param(self) -> tuple[float | None, float]:
        bn = self.first_conv.bn
        assert bn is not None
        return bn.momentum, bn.eps

    def get_active_net_config(self) -> dict[str, Any]:
        """A JSON-able description of the active subnet; ``MobileNetV3.build_from_config`` reads it."""
        return {
            "name": "MobileNetV3",
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
        if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
            state_dict = state_dict["state_dict"]
        state_dict = {k.replace(".mobile_inverted_conv.", ".conv."): v for k, v in state_dict.items()}
        self._check_layout(state_dict)
        problems = state_dict_mismatches(self.state_dict(), state_dict, strict)
        if problems:
            raise CheckpointError(
                f"checkpoint does not fit OFAMobileNetV3(width_mult={self.spec.width_mult}, "
                f"n_classes={self.spec.n_classes}, ks_list={self.ks_list}, "
                f"expand_ratio_list={self.expand_ratio_list}, depth_list={self.depth_list}): "
                + "; ".join(problems),
                hint="build the supernet with the width/classes/space the checkpoint was saved with",
            )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _check_layout(self, state_dict: Mapping[str, Any]) -> None:
        """Refuse weights trained with other strides: their shapes fit, their features would not."""
        given = state_dict.get(LAYOUT_KEY)
        theirs = _describe_layout(None if given is None else [int(v) for v in given])
        ours = _describe_layout([self.spec.stem_stride, *self.spec.stage_strides])
        if theirs != ours:
            raise CheckpointError(
                f"checkpoint was trained with {theirs}, this supernet has {ours}",
                hint="load it into the supernet it was trained for (--supernet NAME)",
            )


def _describe_layout(strides: list[int] | None) -> str:
    """'stem stride S, stage strides [...]'; None (a checkpoint without the key) is MIT's layout."""
    stem, *stages = strides if strides is not None else [MIT_STEM_STRIDE, *MIT_STAGE_STRIDES]
    return f"stem stride {stem}, stage strides {stages}"


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
