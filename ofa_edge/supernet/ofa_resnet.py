"""OFA-ResNet50: the weight-sharing supernet (MIT's ``OFAResNets``) and its static subnets.

Module and parameter names follow MIT's once-for-all, so its state dicts load strictly
(``input_stem.1.conv.conv.conv.weight``, ``blocks.0.downsample.bn.bn.running_var``,
``classifier.linear.linear.weight`` ...). An elastic layer holds max-size tensors; the active
subnet uses their first channels, and extraction copies the very slices ``forward`` uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ofa_edge.errors import ConfigError
from ofa_edge.supernet.elastic import SubnetSelection, check_fits
from ofa_edge.supernet.family import Op
from ofa_edge.supernet.layers import (
    Classifier,
    ConvBNAct,
    ConvUnit,
    ElasticBatchNorm2d,
    ElasticConv2d,
    GlobalAvgPool,
    LinearLayer,
    ResidualBlock,
    SqueezeExcite,
)
from ofa_edge.supernet.resnet_spec import (
    STAGE_STRIDES,
    BottleneckSpec,
    ResNetArch,
    ResNetSpace,
    ResNetSpec,
    bottleneck,
    mid_channels,
)

#: conv -> BN [-> ReLU] units, static and elastic (no SE in a ResNet).
StaticUnit = ConvUnit[nn.Conv2d, nn.BatchNorm2d, SqueezeExcite]
ElasticUnit = ConvUnit[ElasticConv2d, ElasticBatchNorm2d, SqueezeExcite]


def _shortcut_pool(x: torch.Tensor, stride: int) -> torch.Tensor:
    """The downsampling shortcut's average pool (kernel = stride, ceil mode; none at stride 1)."""
    return x if stride == 1 else F.avg_pool2d(x, stride, stride, 0, ceil_mode=True)


class Bottleneck(nn.Module):
    """A static bottleneck block: 1x1 -> 3x3 (stride) -> 1x1, plus the shortcut, then ReLU."""

    def __init__(self, spec: BottleneckSpec) -> None:
        super().__init__()
        self.spec = spec
        cin, mid, cout = spec.cin, spec.mid, spec.cout
        self.conv1: StaticUnit = ConvUnit(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU())
        self.conv2: StaticUnit = ConvUnit(
            nn.Conv2d(mid, mid, 3, spec.stride, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU()
        )
        self.conv3: StaticUnit = ConvUnit(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.downsample: StaticUnit | None = (
            ConvUnit(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)) if spec.downsample else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(_shortcut_pool(x, self.spec.stride))
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + shortcut)


class ElasticBottleneck(nn.Module):
    """A bottleneck block with elastic input, hidden and output widths (MIT's
    ``DynamicResNetBottleneckBlock``); ``active = (mid, cout)`` is set by the supernet."""

    def __init__(self, max_cin: int, max_mid: int, max_cout: int, stride: int, downsample: bool) -> None:
        super().__init__()
        self.stride = stride
        self.conv1: ElasticUnit = ConvUnit(
            ElasticConv2d(max_cin, max_mid), ElasticBatchNorm2d(max_mid), nn.ReLU()
        )
        self.conv2: ElasticUnit = ConvUnit(
            ElasticConv2d(max_mid, max_mid, 3, stride), ElasticBatchNorm2d(max_mid), nn.ReLU()
        )
        self.conv3: ElasticUnit = ConvUnit(ElasticConv2d(max_mid, max_cout), ElasticBatchNorm2d(max_cout))
        self.downsample: ElasticUnit | None = (
            ConvUnit(ElasticConv2d(max_cin, max_cout), ElasticBatchNorm2d(max_cout)) if downsample else None
        )
        self.active = (max_mid, max_cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid, cout = self.active
        ds = self.downsample
        shortcut = x if ds is None else ds.bn(ds.conv(_shortcut_pool(x, self.stride), cout))
        for unit, width in ((self.conv1, mid), (self.conv2, mid)):
            x = unit.activate(unit.bn(unit.conv(x, width)))
        return F.relu(self.conv3.bn(self.conv3.conv(x, cout)) + shortcut)

    @torch.no_grad()
    def extract(self, spec: BottleneckSpec) -> Bottleneck:
        """A static block holding exactly the weights ``forward`` uses for ``spec``."""
        block = Bottleneck(spec)
        pairs = [(self.conv1, block.conv1, spec.mid, spec.cin), (self.conv2, block.conv2, spec.mid, spec.mid)]
        pairs.append((self.conv3, block.conv3, spec.cout, spec.mid))
        if self.downsample is not None and block.downsample is not None:
            pairs.append((self.downsample, block.downsample, spec.cout, spec.cin))
        for elastic, static, cout, cin in pairs:
            static.conv.weight.copy_(elastic.conv.weight(cout, cin))
            elastic.bn.copy_to(static.bn)
        return block


class ElasticConvLayer(nn.Module):
    """3x3 conv -> BN -> ReLU with elastic widths (MIT's ``DynamicConvLayer``), ``width`` active."""

    def __init__(self, max_in: int, max_out: int, stride: int) -> None:
        super().__init__()
        self.conv = ElasticConv2d(max_in, max_out, 3, stride)
        self.bn = ElasticBatchNorm2d(max_out)
        self.act = nn.ReLU()
        self.width = max_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x, self.width)))

    @torch.no_grad()
    def extract(self, cin: int) -> ConvBNAct:
        layer = ConvBNAct(cin, self.width, 3, self.conv.conv.stride[0], act="relu")
        layer.conv.weight.copy_(self.conv.weight(self.width, cin))
        assert layer.bn is not None
        self.bn.copy_to(layer.bn)
        return layer


class ElasticLinearLayer(nn.Module):
    """Dropout, then a classifier over the first ``x.size(1)`` inputs (MIT's ``DynamicLinearLayer``:
    the linear sits at ``linear.linear``)."""

    def __init__(self, max_in: int, n_classes: int, dropout_rate: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else None
        self.linear = LinearLayer(max_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            x = self.dropout(x)
        linear = self.linear.linear
        return F.linear(x, linear.weight[:, : x.size(1)], linear.bias)

    @torch.no_grad()
    def extract(self, cin: int, dropout_rate: float) -> LinearLayer:
        layer = LinearLayer(cin, self.linear.linear.out_features, dropout_rate)
        layer.linear.weight.copy_(self.linear.linear.weight[:, :cin])
        layer.linear.bias.copy_(self.linear.linear.bias)
        return layer


class _ResNetBody(nn.Module):
    """What the supernet and a static subnet share: stem, max pool, blocks, pooling, classifier."""

    input_stem: nn.ModuleList
    blocks: nn.ModuleList
    classifier: nn.Module

    def _active_stem(self) -> list[nn.Module]:
        return list(self.input_stem)

    def _active_blocks(self) -> list[nn.Module]:
        return list(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self._active_stem():
            x = layer(x)
        x = F.max_pool2d(x, 3, 2, 1)
        for block in self._active_blocks():
            x = block(x)
        return self.classifier(x.mean((2, 3)))


class ResNet(_ResNetBody):
    """A static OFA-ResNet subnet: plain conv/BN layers, no elastic machinery."""

    def __init__(self, spec: ResNetSpec, arch: ResNetArch, dropout_rate: float = 0.0) -> None:
        super().__init__()
        self.spec, self.arch = spec, arch
        mid, out = spec.stem_mid_widths[arch.w[0]], spec.stem_widths[arch.w[1]]
        stem: list[nn.Module] = [ConvBNAct(3, mid, 3, 2, act="relu")]
        if spec.runs_stem_block(arch):
            stem.append(ResidualBlock(ConvBNAct(mid, mid, 3, 1, act="relu"), True))
        stem.append(ConvBNAct(mid, out, 3, 1, act="relu"))
        self.input_stem = nn.ModuleList(stem)
        self.block_specs = spec.blocks(arch)
        self.blocks = nn.ModuleList(Bottleneck(b) for b in self.block_specs)
        self.classifier = LinearLayer(self.block_specs[-1].cout, spec.n_classes, dropout_rate)
        self.dropout_rate = dropout_rate

    @staticmethod
    def build_from_config(config: Mapping[str, Any]) -> ResNet:
        """Rebuild (without weights) from ``OFAResNet.get_active_net_config()``."""
        spec = ResNetSpec.from_dict(config["supernet"])
        arch = ResNetArch.from_dict(config["arch"]).validate(spec.space)
        return ResNet(spec, arch, config.get("dropout_rate", 0.0))


class OFAResNet(SubnetSelection[ResNetSpec], _ResNetBody):
    """The OFA-ResNet supernet (elastic depth, expand ratio and width; MIT-compatible)."""

    classifier: ElasticLinearLayer

    def __init__(
        self,
        spec: ResNetSpec | None = None,
        dropout_rate: float = 0.0,
        bn_param: tuple[float, float] = (0.1, 1e-5),
    ) -> None:
        super().__init__()
        self.spec = spec = spec or ResNetSpec()
        self.dropout_rate = dropout_rate
        mid, out = max(spec.stem_mid_widths), max(spec.stem_widths)
        #: The stem's layers, typed: conv, the residual block's conv, conv (``input_stem`` holds them).
        self.stem = (
            ElasticConvLayer(3, mid, 2),
            ElasticConvLayer(mid, mid, 1),
            ElasticConvLayer(mid, out, 1),
        )
        self.input_stem = nn.ModuleList([self.stem[0], ResidualBlock(self.stem[1], True), self.stem[2]])
        blocks: list[ElasticBottleneck] = []
        cin = out
        for stage, slots in enumerate(spec.space.stage_slots):
            cout = max(spec.stage_widths[stage])
            for i in range(len(slots)):
                stride = STAGE_STRIDES[stage] if i == 0 else 1
                blocks.append(ElasticBottleneck(cin, spec.max_mid(stage), cout, stride, i == 0))
                cin = cout
        self.elastic_blocks = tuple(blocks)
        self.blocks = nn.ModuleList(blocks)
        self.classifier = ElasticLinearLayer(cin, spec.n_classes, dropout_rate)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum, m.eps = bn_param
        self._arch = spec.space.max_arch()
        self._apply_arch()

    # --- the active subnet ---------------------------------------------------------------------

    @property
    def space(self) -> ResNetSpace:
        return self.spec.space

    @property
    def active_arch(self) -> ResNetArch:
        """The active subnet, resolution included."""
        return self._arch

    def set_active_subnet(self, d: Any = None, e: Any = None, w: Any = None, **kwargs: Any) -> None:
        """Select a subnet; each of d/e/w is a scalar (all entries) or a full list, None keeps it.

        ``r``/``image_size`` (the resolution) are accepted so MIT's arch dicts can be splatted in;
        any other keyword is an error, not silently ignored.
        """
        r = self._arch.r
        for key, value in kwargs.items():
            if key not in ("r", "image_size"):
                raise ConfigError(
                    f"set_active_subnet: unexpected argument {key}={value!r}; "
                    "expected d, e, w (and optionally r)"
                )
            r = value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value
        space = self.space
        self._arch = ResNetArch(
            d=self._arch.d if d is None else space.d(d),
            e=self._arch.e if e is None else space.e(e),
            w=self._arch.w if w is None else space.w(w),
            r=space.check_resolution(r),
        )
        self._apply_arch()

    def set_arch(self, arch: ResNetArch) -> None:
        """Select the subnet ``arch`` describes (validated)."""
        arch = arch.validate(self.space)
        self.set_active_subnet(arch.d, arch.e, arch.w, r=arch.r)

    def _apply_arch(self) -> None:
        arch, spec = self._arch, self.spec
        self.stem[0].width = self.stem[1].width = spec.stem_mid_widths[arch.w[0]]
        self.stem[2].width = spec.stem_widths[arch.w[1]]
        for stage, slots in enumerate(spec.space.stage_slots):
            cout = spec.stage_widths[stage][arch.w[stage + 2]]
            for slot in slots:
                self.elastic_blocks[slot].active = (mid_channels(cout, arch.e[slot]), cout)

    def _active_stem(self) -> list[nn.Module]:
        stem = list(self.input_stem)
        return stem if self.spec.runs_stem_block(self._arch) else [stem[0], stem[2]]

    def _active_blocks(self) -> list[nn.Module]:
        return list(self._active_elastic_blocks())

    def _active_elastic_blocks(self) -> list[ElasticBottleneck]:
        depths = self._arch.d[1:]
        return [
            self.elastic_blocks[slot]
            for stage, slots in enumerate(self.space.stage_slots)
            for slot in slots[: len(slots) - self.space.max_depth + depths[stage]]
        ]

    def get_active_subnet(self, preserve_weight: bool = True) -> ResNet:
        """The active subnet as a static ``ResNet`` (weights copied unless told not to)."""
        arch = self._arch
        net = ResNet(self.spec, arch, self.dropout_rate)
        if preserve_weight:
            mid = self.spec.stem_mid_widths[arch.w[0]]
            extracted: list[nn.Module] = [self.stem[0].extract(3)]
            if self.spec.runs_stem_block(arch):
                extracted.append(ResidualBlock(self.stem[1].extract(mid), True))
            extracted.append(self.stem[2].extract(mid))
            net.input_stem = nn.ModuleList(extracted)
            pairs = zip(self._active_elastic_blocks(), net.block_specs)
            net.blocks = nn.ModuleList(b.extract(s) for b, s in pairs)
            net.classifier = self.classifier.extract(net.block_specs[-1].cout, self.dropout_rate)
        bn = self.stem[0].bn.bn
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum, m.eps = bn.momentum, bn.eps
        return net.train(self.training)

    def get_active_net_config(self) -> dict[str, Any]:
        """A JSON-able description of the active subnet; ``ResNet.build_from_config`` reads it."""
        bn = self.stem[0].bn.bn
        return {
            "name": ResNetSpec.static_name,
            "supernet": self.spec.to_dict(),
            "arch": self._arch.to_dict(),
            "dropout_rate": self.dropout_rate,
            "bn": {"momentum": bn.momentum, "eps": bn.eps},
            "blocks": [dataclasses.asdict(b) for b in self.spec.blocks(self._arch)],
        }

    # --- checkpoints ---------------------------------------------------------------------------

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Load a state dict (MIT's ``ofa_resnet50`` checkpoint included) or fail with a summary."""
        if isinstance(state_dict.get("state_dict"), Mapping):
            state_dict = state_dict["state_dict"]
        check_fits(
            self.state_dict(),
            state_dict,
            strict,
            f"checkpoint does not fit OFAResNet({self.spec.describe()})",
            "build the supernet with the classes and space the checkpoint was saved with",
        )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


class _MaxPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, 3, 2, 1)


def op_module(spec: ResNetSpec, op: Op) -> nn.Module:
    """``op`` as a module taking a (1, C, H, W) input, built from the layers subnets run."""
    cin, cout = op.input[-1], op.output[-1]
    modules: dict[str, Any] = {
        "Conv": lambda: ConvBNAct(3, cout, 3, 2, act="relu"),
        "ResConv": lambda: ResidualBlock(ConvBNAct(cin, cin, 3, 1, act="relu"), True),
        "Conv_1": lambda: ConvBNAct(cin, cout, 3, 1, act="relu"),
        "MaxPool": _MaxPool,
        "bottleneck": lambda: Bottleneck(bottleneck(op)),
        "AvgPool2D": GlobalAvgPool,
        "Logits": lambda: Classifier(cin, spec.n_classes),
    }
    if op.kind not in modules:
        raise ConfigError(f"op {op.key}: unknown OFA-ResNet op kind {op.kind!r}; known: {', '.join(modules)}")
    return modules[op.kind]()
