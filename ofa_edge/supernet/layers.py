"""Building blocks of OFA-MobileNetV3: plain static layers and their elastic (sliceable) twins.

Module and parameter names follow MIT's once-for-all exactly, so official state dicts load
strictly (e.g. ``depth_conv.conv.conv.weight``, ``depth_conv.conv.7to5_matrix``). An elastic
layer holds max-size tensors; the active subnet uses their first channels, and its kernels are
derived from the largest one by centre crops passed through learned transformation matrices.
Extraction (``ElasticMBConv.extract``) copies the very slices ``forward`` uses into a static
``MBConv``, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from ofa_edge.supernet.spec import SE_REDUCTION, BlockSpec, make_divisible, mid_channels


def activation(name: str | None) -> nn.Module | None:
    """The activation modules OFA's networks use, by OFA's names (relu6: ProxylessNAS's)."""
    if name is None:
        return None
    table = {"relu": nn.ReLU, "relu6": nn.ReLU6, "h_swish": nn.Hardswish, "h_sigmoid": nn.Hardsigmoid}
    if name not in table:
        raise ValueError(f"activation {name!r} is not one of {sorted(table)}")
    return table[name]()


class ConvBNAct(nn.Module):
    """conv -> BN -> activation (OFA's ConvLayer): first conv, final expand, feature mix."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int = 1,
        stride: int = 1,
        act: str | None = None,
        use_bn: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout) if use_bn else None
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return x if self.act is None else self.act(x)


class _SqueezeExciteFC(nn.Module):
    """SE's reduce -> ReLU -> expand -> hard sigmoid, under MIT's names (``fc.reduce`` ...)."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)
        self.h_sigmoid = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h_sigmoid(self.expand(self.relu(self.reduce(x))))


class SqueezeExcite(nn.Module):
    """SE with a hard-sigmoid gate; mid width make_divisible(channels // 4, 8)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = _SqueezeExciteFC(channels, make_divisible(channels // SE_REDUCTION))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((2, 3), keepdim=True))


ConvT = TypeVar("ConvT", bound=nn.Module)
NormT = TypeVar("NormT", bound=nn.Module)
SqueezeT = TypeVar("SqueezeT", bound=SqueezeExcite)


class ConvUnit(nn.Module, Generic[ConvT, NormT, SqueezeT]):
    """conv -> bn [-> act] [-> se] under MIT's names: a typed stand-in for OFA's named
    ``nn.Sequential`` (same state-dict keys, in the same order)."""

    def __init__(
        self, conv: ConvT, bn: NormT, act: nn.Module | None = None, se: SqueezeT | None = None
    ) -> None:
        super().__init__()
        self.conv = conv
        self.bn = bn
        self.act = act
        self.se = se

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.act is None else self.act(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activate(self.bn(self.conv(x)))
        return x if self.se is None else self.se(x)


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    """The bias of a conv built with one (SE's)."""
    assert conv.bias is not None
    return conv.bias


class MBConv(nn.Module):
    """A static inverted-residual block: [1x1 expand] -> kxk depthwise [-> SE] -> 1x1 project."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        self.inverted_bottleneck: ConvUnit[nn.Conv2d, nn.BatchNorm2d, SqueezeExcite] | None = (
            ConvUnit(
                nn.Conv2d(spec.cin, spec.mid, 1, bias=False), nn.BatchNorm2d(spec.mid), activation(spec.act)
            )
            if spec.has_expand
            else None
        )
        self.depth_conv = ConvUnit(
            nn.Conv2d(spec.mid, spec.mid, spec.k, spec.stride, spec.k // 2, groups=spec.mid, bias=False),
            nn.BatchNorm2d(spec.mid),
            activation(spec.act),
            SqueezeExcite(spec.mid) if spec.se else None,
        )
        self.point_linear: ConvUnit[nn.Conv2d, nn.BatchNorm2d, SqueezeExcite] = ConvUnit(
            nn.Conv2d(spec.mid, spec.cout, 1, bias=False), nn.BatchNorm2d(spec.cout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))


class ResidualBlock(nn.Module):
    """A block plus an identity shortcut when shapes allow (stride 1, same width)."""

    def __init__(self, conv: nn.Module, shortcut: bool) -> None:
        super().__init__()
        self.conv = conv
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y + x if self.shortcut else y


class LinearLayer(nn.Module):
    """Dropout then a linear classifier (OFA's LinearLayer)."""

    def __init__(self, in_features: int, out_features: int, dropout_rate: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else None
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            x = self.dropout(x)
        return self.linear(x)


class GlobalAvgPool(nn.Module):
    """Global average pooling keeping the 1x1 map (MBv3's ``AvgPool2D`` op)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


class Classifier(nn.Module):
    """Flatten + linear: MBv3's ``Logits`` op as the subnets run it."""

    def __init__(self, cin: int, n_classes: int) -> None:
        super().__init__()
        self.classifier = LinearLayer(cin, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(x, 1))


class PooledClassifier(Classifier):
    """Global pooling, then flatten + linear: ProxylessNAS's ``Logits`` op (MIT's key covers both)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.mean((2, 3)))


# --- elastic layers -------------------------------------------------------------------------


class ElasticConv2d(nn.Module):
    """A dense conv (1x1 unless told; 'same' padding) whose input and output widths shrink to
    the first channels (MIT's ``DynamicConv2d``)."""

    def __init__(self, max_in: int, max_out: int, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(max_in, max_out, kernel_size, stride, bias=False)

    def weight(self, cout: int, cin: int) -> torch.Tensor:
        return self.conv.weight[:cout, :cin]

    def forward(self, x: torch.Tensor, cout: int) -> torch.Tensor:
        k = self.conv.kernel_size[0]
        return F.conv2d(x, self.weight(cout, x.size(1)), None, self.conv.stride, k // 2)


class ElasticBatchNorm2d(nn.Module):
    """BatchNorm over the first ``x.size(1)`` channels, updating only those running stats."""

    def __init__(self, max_features: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(max_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn, c = self.bn, x.size(1)
        if c == bn.num_features:
            return bn(x)
        factor = 0.0
        if bn.training and bn.track_running_stats:
            assert bn.num_batches_tracked is not None
            bn.num_batches_tracked += 1
            factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        assert bn.running_mean is not None and bn.running_var is not None  # BN built with stats
        return F.batch_norm(
            x,
            bn.running_mean[:c],
            bn.running_var[:c],
            bn.weight[:c],
            bn.bias[:c],
            bn.training or not bn.track_running_stats,
            factor,
            bn.eps,
        )

    def copy_to(self, target: nn.BatchNorm2d) -> None:
        c = target.num_features
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(target, name).data.copy_(getattr(self.bn, name).data[:c])


class ElasticDepthwiseConv2d(nn.Module):
    """Depthwise conv with elastic width and kernel size (7 -> 5 -> 3 via learned matrices)."""

    def __init__(self, channels: int, ks_list: Sequence[int], stride: int) -> None:
        super().__init__()
        self.ks_set = sorted(set(ks_list))
        self.stride = stride
        k_max = self.ks_set[-1]
        self.conv = nn.Conv2d(channels, channels, k_max, stride, groups=channels, bias=False)
        for small, large in zip(self.ks_set, self.ks_set[1:]):
            self.register_parameter(f"{large}to{small}_matrix", nn.Parameter(torch.eye(small**2)))

    def filter(self, channels: int, k: int) -> torch.Tensor:
        """The (channels, 1, k, k) kernel: centre crops of the larger kernel, transformed."""
        weight = self.conv.weight[:channels]
        for large, small in zip(reversed(self.ks_set), reversed(self.ks_set[:-1])):
            if large <= k:
                break
            start = large // 2 - small // 2
            crop = weight[:, :, start : start + small, start : start + small].contiguous()
            matrix = getattr(self, f"{large}to{small}_matrix")
            weight = F.linear(crop.view(-1, small * small), matrix).view(channels, 1, small, small)
        return weight

    def forward(self, x: torch.Tensor, k: int) -> torch.Tensor:
        c = x.size(1)
        return F.conv2d(x, self.filter(c, k), None, self.stride, k // 2, 1, c)


class ElasticSqueezeExcite(SqueezeExcite):
    """SE whose reduce/expand convs shrink with the block's active width."""

    def sliced(self, channels: int) -> dict[str, torch.Tensor]:
        mid = make_divisible(channels // SE_REDUCTION)
        fc = self.fc
        return {
            "fc.reduce.weight": fc.reduce.weight[:mid, :channels],
            "fc.reduce.bias": _bias(fc.reduce)[:mid],
            "fc.expand.weight": fc.expand.weight[:channels, :mid],
            "fc.expand.bias": _bias(fc.expand)[:channels],
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.sliced(x.size(1))
        y = F.conv2d(x.mean((2, 3), keepdim=True), w["fc.reduce.weight"], w["fc.reduce.bias"])
        y = F.conv2d(F.relu(y), w["fc.expand.weight"], w["fc.expand.bias"])
        return x * F.hardsigmoid(y)


class ElasticMBConv(nn.Module):
    """An inverted-residual block with elastic kernel size and expand ratio.

    The active choice is the immutable pair ``active = (k, e)``, set by the supernet; ``forward``
    only reads it.
    """

    def __init__(
        self,
        max_cin: int,
        cout: int,
        ks_list: Sequence[int],
        expand_ratio_list: Sequence[float],
        stride: int,
        act: str,
        use_se: bool,
    ) -> None:
        super().__init__()
        max_mid = mid_channels(max_cin, max(expand_ratio_list))
        self.cout, self.stride, self.act, self.use_se = cout, stride, act, use_se
        self.expand_ratio_list = tuple(expand_ratio_list)
        self.inverted_bottleneck: ConvUnit[ElasticConv2d, ElasticBatchNorm2d, ElasticSqueezeExcite] = (
            ConvUnit(ElasticConv2d(max_cin, max_mid), ElasticBatchNorm2d(max_mid), activation(act))
        )
        self.depth_conv = ConvUnit(
            ElasticDepthwiseConv2d(max_mid, ks_list, stride),
            ElasticBatchNorm2d(max_mid),
            activation(act),
            ElasticSqueezeExcite(max_mid) if use_se else None,
        )
        self.point_linear: ConvUnit[ElasticConv2d, ElasticBatchNorm2d, ElasticSqueezeExcite] = ConvUnit(
            ElasticConv2d(max_mid, cout), ElasticBatchNorm2d(cout)
        )
        self.active: tuple[int, float] = (max(ks_list), max(expand_ratio_list))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, e = self.active
        ib, dw, pl = self.inverted_bottleneck, self.depth_conv, self.point_linear
        x = ib.activate(ib.bn(ib.conv(x, mid_channels(x.size(1), e))))
        x = dw.activate(dw.bn(dw.conv(x, k)))
        if dw.se is not None:
            x = dw.se(x)
        return pl.bn(pl.conv(x, self.cout))

    @torch.no_grad()
    def extract(self, spec: BlockSpec) -> MBConv:
        """A static MBConv holding exactly the weights ``forward`` would use for ``spec``."""
        block = MBConv(spec)
        ib, dw, pl = self.inverted_bottleneck, self.depth_conv, self.point_linear
        assert block.inverted_bottleneck is not None
        block.inverted_bottleneck.conv.weight.copy_(ib.conv.weight(spec.mid, spec.cin))
        ib.bn.copy_to(block.inverted_bottleneck.bn)
        block.depth_conv.conv.weight.copy_(dw.conv.filter(spec.mid, spec.k))
        dw.bn.copy_to(block.depth_conv.bn)
        if block.depth_conv.se is not None and dw.se is not None:
            block.depth_conv.se.load_state_dict(dw.se.sliced(spec.mid))
        block.point_linear.conv.weight.copy_(pl.conv.weight(spec.cout, spec.mid))
        pl.bn.copy_to(block.point_linear.bn)
        return block

    @torch.no_grad()
    def sort_channels(self, expand_stage: int = 0) -> None:
        """Reorder hidden channels by importance (L1 of the projection weights), as OFA does
        before elastic-expand training, so that narrower subnets keep the most useful ones.

        ``expand_stage`` > 0 keeps channels already inside the ``expand_stage`` narrowest widths
        ahead of the rest (sorted within each width band), so earlier expand training survives.
        """
        ib, dw, pl = self.inverted_bottleneck, self.depth_conv, self.point_linear
        importance = pl.conv.conv.weight.abs().sum(dim=(0, 2, 3))
        cin = ib.conv.conv.weight.shape[1]
        widths = sorted({mid_channels(cin, e) for e in self.expand_ratio_list}, reverse=True)
        right, base = len(importance), -len(widths) * 1e5
        for left in widths[: expand_stage + 1]:  # OFA's exact offsets (float ties included)
            importance[left:right] += base
            base += 1e5
            right = left
        order = torch.argsort(importance, descending=True)
        pl.conv.conv.weight.copy_(pl.conv.conv.weight[:, order])
        dw.conv.conv.weight.copy_(dw.conv.conv.weight[order])
        ib.conv.conv.weight.copy_(ib.conv.conv.weight[order])
        for bn in (ib.bn.bn, dw.bn.bn):
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, name).copy_(getattr(bn, name)[order])
        if dw.se is not None:
            fc = dw.se.fc
            fc.expand.weight.copy_(fc.expand.weight[order])
            _bias(fc.expand).copy_(_bias(fc.expand)[order])
            fc.reduce.weight.copy_(fc.reduce.weight[:, order])
            se_order = torch.argsort(fc.expand.weight.abs().sum(dim=(0, 2, 3)), descending=True)
            fc.expand.weight.copy_(fc.expand.weight[:, se_order])
            fc.reduce.weight.copy_(fc.reduce.weight[se_order])
            _bias(fc.reduce).copy_(_bias(fc.reduce)[se_order])
