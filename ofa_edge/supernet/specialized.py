"""MIT's specialized nets: the 50 subnets MIT picked from its supernets for given phones, GPUs,
CPUs and FLOPs budgets and fine-tuned, read from MIT's own files and built from ofa-edge's layers.

A net is a folder of three files, as MIT publishes them: ``net.config`` (JSON of MIT's
``MobileNetV3.config`` or ``ProxylessNASNets.config``, blocks under the new ``conv`` key or the old
``mobile_inverted_conv``), ``run.config`` (``{"image_size": N}``) and ``init`` (``{"state_dict":
...}``). A net id downloads its folder on first use into the cache, the sha256 of each file
recorded then and checked at every later use (``OFA_EDGE_MIRROR``: ``MIRROR/ofa_specialized/ID/``);
a folder on disk is read as it is.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ofa_edge.errors import ConfigError, UnknownName
from ofa_edge.files import cache_dir
from ofa_edge.supernet.elastic import check_fits, mit_state_dict
from ofa_edge.supernet.layers import ConvBNAct, LinearLayer, MBConv, ResidualBlock, activation
from ofa_edge.supernet.preprocessing import IMAGENET
from ofa_edge.supernet.proxyless import ProxylessSpec
from ofa_edge.supernet.registry import ByteProgress, cached_download, mit_url, read_checkpoint
from ofa_edge.supernet.spec import BlockSpec, MBv3Spec, conv_out_size

NET_CONFIG, RUN_CONFIG, INIT = "net.config", "run.config", "init"
#: How every one of MIT's specialized nets normalizes its images: they were trained on ImageNet.
PREPROCESSING = IMAGENET
#: The network classes of MIT's specialized nets, with the BN eps each uses when net.config has
#: none: that of the family its supernet is of.
NET_KINDS = {spec.static_name: spec.bn_eps for spec in (MBv3Spec, ProxylessSpec)}

#: MIT's 50 specialized net ids by the supernet they come from (its ``classifier.in_features``:
#: 1536 for w1.2, 1280 for w1.0, 1664 for ProxylessNAS w1.3).
_FAMILIES: dict[str, tuple[str, ...]] = {
    "ofa_mbv3_d234_e346_k357_w1.2": (
        "flops@595M_top1@80.0_finetune@75",
        "flops@482M_top1@79.6_finetune@75",
        "flops@389M_top1@79.1_finetune@75",
        "note10_lat@64ms_top1@80.2_finetune@75",
        "note10_lat@50ms_top1@79.7_finetune@75",
        "note10_lat@41ms_top1@79.3_finetune@75",
        "note10_lat@30ms_top1@78.4_finetune@75",
        "pixel1_lat@143ms_top1@80.1_finetune@75",
        "pixel1_lat@132ms_top1@79.8_finetune@75",
        "pixel1_lat@79ms_top1@78.7_finetune@75",
    ),
    "ofa_mbv3_d234_e346_k357_w1.0": (
        "note10_lat@22ms_top1@76.6_finetune@25",
        "note10_lat@16ms_top1@75.5_finetune@25",
        "note10_lat@11ms_top1@73.6_finetune@25",
        "note10_lat@8ms_top1@71.4_finetune@25",
        "pixel1_lat@58ms_top1@76.9_finetune@75",
        "pixel1_lat@40ms_top1@74.9_finetune@25",
        "pixel1_lat@28ms_top1@73.3_finetune@25",
        "pixel1_lat@20ms_top1@71.4_finetune@25",
        "pixel2_lat@62ms_top1@75.8_finetune@25",
        "pixel2_lat@50ms_top1@74.7_finetune@25",
        "pixel2_lat@35ms_top1@73.4_finetune@25",
        "pixel2_lat@25ms_top1@71.5_finetune@25",
        "note8_lat@65ms_top1@76.1_finetune@25",
        "note8_lat@49ms_top1@74.9_finetune@25",
        "note8_lat@31ms_top1@72.8_finetune@25",
        "note8_lat@22ms_top1@70.4_finetune@25",
        "s7edge_lat@88ms_top1@76.3_finetune@25",
        "s7edge_lat@58ms_top1@74.7_finetune@25",
        "s7edge_lat@41ms_top1@73.1_finetune@25",
        "s7edge_lat@29ms_top1@70.5_finetune@25",
        "LG-G8_lat@24ms_top1@76.4_finetune@25",
        "LG-G8_lat@16ms_top1@74.7_finetune@25",
        "LG-G8_lat@11ms_top1@73.0_finetune@25",
        "LG-G8_lat@8ms_top1@71.1_finetune@25",
    ),
    "ofa_proxyless_d234_e346_k357_w1.3": (
        "1080ti_gpu64@27ms_top1@76.4_finetune@25",
        "1080ti_gpu64@22ms_top1@75.3_finetune@25",
        "1080ti_gpu64@15ms_top1@73.8_finetune@25",
        "1080ti_gpu64@12ms_top1@72.6_finetune@25",
        "v100_gpu64@11ms_top1@76.1_finetune@25",
        "v100_gpu64@9ms_top1@75.3_finetune@25",
        "v100_gpu64@6ms_top1@73.0_finetune@25",
        "v100_gpu64@5ms_top1@71.6_finetune@25",
        "tx2_gpu16@96ms_top1@75.8_finetune@25",
        "tx2_gpu16@80ms_top1@75.4_finetune@25",
        "tx2_gpu16@47ms_top1@72.9_finetune@25",
        "tx2_gpu16@35ms_top1@70.3_finetune@25",
        "cpu_lat@17ms_top1@75.7_finetune@25",
        "cpu_lat@15ms_top1@74.6_finetune@25",
        "cpu_lat@11ms_top1@72.0_finetune@25",
        "cpu_lat@10ms_top1@71.1_finetune@25",
    ),
}

_ID = re.compile(
    r"(?P<target>.+?)@(?P<budget>[0-9.]+)(?P<unit>ms|M)_top1@(?P<top1>[0-9.]+)_finetune@(?P<ep>[0-9]+)"
)


@dataclasses.dataclass(frozen=True)
class SpecializedInfo:
    """One of MIT's specialized nets: its id, the supernet it was taken from and what the id says
    (target: a device, ``note10``, ``1080ti_gpu64``..., or ``flops``; the budget; ImageNet top-1)."""

    id: str
    supernet: str
    target: str
    budget: float
    unit: str  # "ms" or "MFLOPs"
    top1: float
    finetune_epochs: int

    @classmethod
    def from_id(cls, net_id: str, supernet: str) -> SpecializedInfo:
        m = _ID.fullmatch(net_id)
        if m is None:
            raise ConfigError(
                f"{net_id!r} is not a specialized net id", hint="e.g. note10_lat@64ms_top1@80.2_finetune@75"
            )
        unit = "ms" if m["unit"] == "ms" else "MFLOPs"
        target = m["target"].removesuffix("_lat")
        return cls(net_id, supernet, target, float(m["budget"]), unit, float(m["top1"]), int(m["ep"]))

    @property
    def folder_name(self) -> str:
        """The id as MIT's file host names its folder ('@' -> '-')."""
        return self.id.replace("@", "-")

    def url(self, file: str) -> str:
        return mit_url(f"ofa_specialized/{self.folder_name}/{file}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SPECIALIZED = {i: SpecializedInfo.from_id(i, net) for net, ids in _FAMILIES.items() for i in ids}


def list_specialized() -> list[SpecializedInfo]:
    """MIT's 50 specialized nets, w1.2 MobileNetV3 ones first, then w1.0, then ProxylessNAS."""
    return list(_SPECIALIZED.values())


def get_specialized_info(net_id: str) -> SpecializedInfo:
    """The specialized net of MIT's id ``net_id`` (an ``UnknownName`` suggesting close ids if none)."""
    if net_id not in _SPECIALIZED:
        raise UnknownName("specialized net", net_id, list(_SPECIALIZED))
    return _SPECIALIZED[net_id]


# --- net.config ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """A ConvLayer of net.config: conv -> [BN] -> [activation], 'same' padding, no bias."""

    cin: int
    cout: int
    kernel_size: int
    stride: int
    act: str | None
    use_bn: bool

    def build(self) -> ConvBNAct:
        return ConvBNAct(self.cin, self.cout, self.kernel_size, self.stride, self.act, self.use_bn)


@dataclasses.dataclass(frozen=True)
class SpecializedLayout:
    """What a net.config and run.config describe, checked: everything needed to build the net."""

    kind: str  # a key of NET_KINDS
    image_size: int
    bn_momentum: float | None
    bn_eps: float
    first_conv: ConvSpec
    blocks: tuple[BlockSpec, ...]
    final_expand_layer: ConvSpec | None  # MobileNetV3 only
    feature_mix_layer: ConvSpec | None  # optional in ProxylessNASNets
    n_classes: int
    dropout_rate: float


_REQUIRED = object()
_KINDS: dict[type, str] = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    dict: "an object",
    list: "a list",
}


class _Fields:
    """One object of a net.config, read key by key; each error names the file and the key."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        self.where, self.source = where, source
        if not isinstance(data, dict):
            raise self.error(f"{where or 'the top level'} is {json.dumps(data)[:40]}, not an object")
        self.data: dict[str, Any] = data

    def error(self, what: str) -> ConfigError:
        return ConfigError(
            f"{self.source}: {what}", hint="write net.config as MIT's MobileNetV3/ProxylessNASNets .config"
        )

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type, default: Any = _REQUIRED, optional: bool = False) -> Any:
        """``key``'s value, of ``kind`` (or null when ``optional``); ``default`` when absent."""
        if key not in self.data:
            if default is _REQUIRED:
                raise self.error(f"{self.path(key)} is missing")
            return default
        value = self.data[key]
        if value is None and optional:
            return None
        fits = isinstance(value, (int, float) if kind is float else kind)
        if not fits or isinstance(value, bool) != (kind is bool):
            raise self.error(f"{self.path(key)} = {json.dumps(value)[:40]} is not {_KINDS[kind]}")
        return value

    def positive(self, key: str) -> int:
        value = self.get(key, int)
        if value < 1:
            raise self.error(f"{self.path(key)} = {value} is not a positive integer")
        return int(value)

    def fixed(self, key: str, *allowed: Any) -> None:
        """``key``, when given, must be one of ``allowed``: the only values ofa-edge builds."""
        if key in self.data and self.data[key] not in allowed:
            shown = " or ".join(json.dumps(a) for a in allowed)
            raise self.error(
                f"{self.path(key)} = {json.dumps(self.data[key])} is not supported (only {shown})"
            )

    def kernel_and_stride(self) -> tuple[int, int]:
        """A conv's kernel size (odd) and stride (1 or 2)."""
        k, stride = self.positive("kernel_size"), self.get("stride", int, 1)
        if k % 2 == 0 or stride not in (1, 2):
            raise self.error(
                f"{self.where}: kernel_size {k} and stride {stride} (odd kernels, strides 1 or 2)"
            )
        return k, stride

    def name(self, *allowed: str) -> None:
        name = self.get("name", str)
        if name not in allowed:
            raise self.error(f"{self.path('name')} = {name!r} is not supported (only {', '.join(allowed)})")

    def act(self, key: str, default: str | None) -> str | None:
        value = self.get(key, str, default, optional=True)
        value = None if value == "none" else value
        try:
            activation(value)
        except ValueError:
            raise self.error(
                f"{self.path(key)} = {value!r} is not supported (relu, relu6, h_swish)"
            ) from None
        return value

    def only(self, *known: str) -> None:
        unknown = sorted(set(self.data) - {"name", *known})
        if unknown:
            raise self.error(
                f"{self.path(unknown[0])} is not a key of this layer (known: {', '.join(known)})"
            )


def _conv_spec(data: Any, where: str, source: str) -> ConvSpec:
    f = _Fields(data, where, source)
    f.name("ConvLayer")
    f.only("in_channels", "out_channels", "kernel_size", "stride", "dilation", "groups", "bias",
           "has_shuffle", "use_se", "use_bn", "act_func", "dropout_rate", "ops_order")  # fmt: skip
    only = {
        "dilation": 1,
        "groups": 1,
        "bias": False,
        "has_shuffle": False,
        "use_se": False,
        "dropout_rate": 0,
    }
    for key, value in {**only, "ops_order": "weight_bn_act"}.items():
        f.fixed(key, value)
    k, stride = f.kernel_and_stride()
    return ConvSpec(
        f.positive("in_channels"),
        f.positive("out_channels"),
        k,
        stride,
        f.act("act_func", "relu"),
        f.get("use_bn", bool, True),
    )


def _block_spec(data: Any, i: int, cin: int, size: int, source: str) -> BlockSpec:
    b = _Fields(data, f"blocks[{i}]", source)
    b.only("conv", "mobile_inverted_conv", "shortcut")  # the block's own name is ignored, as MIT does
    key = "conv" if "conv" in b.data else "mobile_inverted_conv"  # MIT's new key, else its old one
    if key not in b.data:
        raise b.error(f"{b.where} has neither conv nor mobile_inverted_conv")
    c = _Fields(b.get(key, dict), b.path(key), source)
    c.name("MBConvLayer", "MBInvertedConvLayer")
    c.only("in_channels", "out_channels", "kernel_size", "stride", "expand_ratio", "mid_channels",
           "act_func", "use_se", "groups")  # fmt: skip
    c.fixed("groups", None)
    if c.positive("in_channels") != cin:
        raise c.error(f"{c.path('in_channels')} = {c.data['in_channels']}, but the layer before gives {cin}")
    cout, (k, stride) = c.positive("out_channels"), c.kernel_and_stride()
    expand = c.get("expand_ratio", float, 6, optional=True)
    mid = c.get("mid_channels", int, None, optional=True)
    if mid is None and expand is None:
        raise c.error(f"{c.where} gives neither expand_ratio nor mid_channels")
    mid = round(cin * expand) if mid is None else mid
    if mid < 1:
        raise c.error(f"{c.where}: {mid} hidden channels")
    if expand == 1 and mid != cin:
        raise c.error(f"{c.path('mid_channels')} = {mid} with expand_ratio 1 (no expansion) needs {cin}")
    shortcut = b.get("shortcut", dict, None, optional=True)
    if shortcut is not None:
        _Fields(shortcut, b.path("shortcut"), source).name("IdentityLayer")
        if stride != 1 or cin != cout:
            raise b.error(f"{b.path('shortcut')}: an identity shortcut needs stride 1 and in = out channels")
    act = c.act("act_func", "relu6")
    if act is None:
        raise c.error(f"{c.path('act_func')}: a block needs an activation")
    se = c.get("use_se", bool, False)
    return BlockSpec(size, cin, mid, cout, k, stride, se, act, shortcut is not None, has_expand=expand != 1)


def parse_net_config(config: Any, image_size: int, source: str = NET_CONFIG) -> SpecializedLayout:
    """The layout a net.config (either key style) describes at ``image_size``, every key checked."""
    top = _Fields(config, "", source)
    kind = top.get("name", str)
    if kind not in NET_KINDS:
        raise top.error(f"name = {kind!r} is not supported (only {', '.join(NET_KINDS)})")
    bn = _Fields(top.get("bn", dict, {}), "bn", source)
    bn.only("momentum", "eps", "ws_eps", "gn_channel_per_group")
    bn.fixed("ws_eps", None)
    bn.fixed("gn_channel_per_group", None)
    first = _conv_spec(top.get("first_conv", dict), "first_conv", source)
    if first.cin != 3:
        raise top.error(f"first_conv.in_channels = {first.cin}, not 3 (RGB)")
    blocks_data = top.get("blocks", list)
    if not blocks_data:
        raise top.error("blocks is empty")
    blocks, cin, size = [], first.cout, conv_out_size(image_size, first.stride)
    for i, data in enumerate(blocks_data):
        blocks.append(_block_spec(data, i, cin, size, source))
        cin, size = blocks[-1].cout, blocks[-1].out_size
    tails: list[ConvSpec | None] = []
    for key in ("final_expand_layer", "feature_mix_layer"):
        data = top.get(key, dict, None, optional=True)
        required = kind == "MobileNetV3"
        if data is None and required:
            raise top.error(f"{key} is missing (a MobileNetV3 has one)")
        if data is not None and key == "final_expand_layer" and not required:
            raise top.error(f"{key} is not supported in a {kind}")
        tail = None if data is None else _conv_spec(data, key, source)
        if tail is not None and tail.cin != cin:
            raise top.error(f"{key}.in_channels = {tail.cin}, but the layer before gives {cin}")
        cin = cin if tail is None else tail.cout
        tails.append(tail)
    cls = _Fields(top.get("classifier", dict), "classifier", source)
    cls.name("LinearLayer")
    cls.only("in_features", "out_features", "bias", "use_bn", "act_func", "dropout_rate", "ops_order")
    cls.fixed("bias", True)
    cls.fixed("use_bn", False)
    cls.fixed("act_func", None)
    cls.fixed("ops_order", "weight_bn_act")
    if cls.positive("in_features") != cin:
        raise cls.error(
            f"classifier.in_features = {cls.data['in_features']}, but the layer before gives {cin}"
        )
    return SpecializedLayout(
        kind=kind,
        image_size=image_size,
        bn_momentum=bn.get("momentum", float, 0.1, optional=True),
        bn_eps=bn.get("eps", float, NET_KINDS[kind]),
        first_conv=first,
        blocks=tuple(blocks),
        final_expand_layer=tails[0],
        feature_mix_layer=tails[1],
        n_classes=cls.positive("out_features"),
        dropout_rate=float(cls.get("dropout_rate", float, 0)),
    )


def read_layout(folder: str | Path) -> SpecializedLayout:
    """The layout of the net in ``folder`` (its net.config and run.config's image_size)."""
    folder = Path(folder)
    docs = []
    for name in (NET_CONFIG, RUN_CONFIG):
        path = folder / name
        try:
            docs.append(json.loads(path.read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(
                f"{path} is unreadable: {err}",
                hint="a specialized net's folder holds net.config, run.config, init",
            ) from None
    run = _Fields(docs[1], "", str(folder / RUN_CONFIG))
    size = run.positive("image_size")
    return parse_net_config(docs[0], size, str(folder / NET_CONFIG))


# --- the network ---------------------------------------------------------------------------------


class SpecializedNet(nn.Module):
    """A static MobileNetV3 or ProxylessNAS net built from ofa-edge's layers under MIT's module
    names, so MIT's ``init`` loads strictly; ``image_size`` is the input side it was tuned for."""

    def __init__(self, layout: SpecializedLayout) -> None:
        super().__init__()
        self.layout, self.image_size = layout, layout.image_size
        self.first_conv = layout.first_conv.build()
        self.blocks = nn.ModuleList(ResidualBlock(MBConv(b), b.shortcut) for b in layout.blocks)
        self.final_expand_layer = (
            None if layout.final_expand_layer is None else layout.final_expand_layer.build()
        )
        self.feature_mix_layer = (
            None if layout.feature_mix_layer is None else layout.feature_mix_layer.build()
        )
        in_features = (layout.feature_mix_layer or layout.final_expand_layer or layout.blocks[-1]).cout
        self.classifier = LinearLayer(in_features, layout.n_classes, layout.dropout_rate)
        #: MobileNetV3 mixes features after global pooling, ProxylessNAS before it.
        self.mix_after_pool = layout.kind == "MobileNetV3"
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum, m.eps = layout.bn_momentum, layout.bn_eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for block in self.blocks:
            x = block(x)
        if self.final_expand_layer is not None:
            x = self.final_expand_layer(x)
        if self.feature_mix_layer is not None and not self.mix_after_pool:
            x = self.feature_mix_layer(x)
        x = x.mean((2, 3), keepdim=True)
        if self.feature_mix_layer is not None and self.mix_after_pool:
            x = self.feature_mix_layer(x)
        return self.classifier(torch.flatten(x, 1))

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Load MIT's ``init`` (either key style) or fail with a summary of what does not fit."""
        state_dict = mit_state_dict(state_dict)
        check_fits(
            self.state_dict(),
            state_dict,
            strict,
            f"weights do not fit this {self.layout.kind}",
            "load the init that was saved with this net.config",
        )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def specialized_folder(
    name: str | Path, *, weights: bool = True, progress: ByteProgress | None = None
) -> Path:
    """The folder holding a specialized net's files: ``name`` itself if it is a folder, else the
    cache's copy of MIT's net ``name`` (downloaded on first use; ``init`` only with ``weights``)."""
    path = Path(name)
    if path.is_dir():
        return path
    info = get_specialized_info(str(name))
    folder = cache_dir() / "specialized" / info.folder_name
    for file in (NET_CONFIG, RUN_CONFIG, INIT) if weights else (NET_CONFIG, RUN_CONFIG):
        cached_download(
            info.url(file),
            folder / file,
            f"{file} of specialized net {info.id!r}",
            "connect to the network (or set OFA_EDGE_MIRROR), "
            "or pass the folder holding its net.config, run.config and init",
            progress if file == INIT else None,
        )
    return folder


def load_specialized(
    name: str | Path, *, pretrained: bool = True, progress: ByteProgress | None = None
) -> SpecializedNet:
    """MIT's specialized net ``name`` (an id of ``list_specialized()`` or a folder of MIT's three
    files) as a static net in eval mode, with its weights unless ``pretrained`` is False."""
    folder = specialized_folder(name, weights=pretrained, progress=progress)
    net = SpecializedNet(read_layout(folder))
    if pretrained:
        # Only the cache's downloads, whose hashes are recorded, may be fully unpickled.
        net.load_state_dict(read_checkpoint(folder / INIT, trusted=not Path(name).is_dir()))
    return net.eval()
