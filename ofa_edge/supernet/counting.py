"""MACs and parameter counts of any subnet at any resolution, computed from the layout alone.

Counted as OFA's ``count_net_flops`` / ``count_parameters`` do: convolutions and the linear
classifier contribute MACs (BN, activations, pooling and the residual add do not); parameters
are every learnable tensor of the extracted static subnet, BN affine terms included. A subnet's
count is the sum of its ops' (each family counts its own ops, :meth:`FamilySpec.op_counts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ofa_edge.supernet.family import Arch, FamilySpec
    from ofa_edge.supernet.spec import BlockSpec


@dataclass(frozen=True)
class Counts:
    macs: int
    params: int


def conv_counts(cin: int, cout: int, k: int, out_size: int, bn: bool = True) -> Counts:
    """A dense k x k convolution (no bias) producing an ``out_size`` square map, with BN or not."""
    weights = cin * cout * k * k
    return Counts(weights * out_size**2, weights + (2 * cout if bn else 0))


def linear_counts(cin: int, cout: int) -> Counts:
    """A linear layer with bias (the classifier)."""
    return Counts(cin * cout, cin * cout + cout)


def block_counts(b: BlockSpec) -> Counts:
    """An inverted-residual block: [1x1 expand] -> depthwise [-> SE] -> 1x1 projection."""
    out_px = b.out_size**2
    macs = params = 0
    if b.has_expand:
        macs += b.cin * b.mid * b.in_size**2
        params += b.cin * b.mid + 2 * b.mid
    macs += b.mid * b.k * b.k * out_px
    params += b.mid * b.k * b.k + 2 * b.mid
    if b.se:
        macs += 2 * b.mid * b.se_mid
        params += 2 * b.mid * b.se_mid + b.se_mid + b.mid
    macs += b.mid * b.cout * out_px
    params += b.mid * b.cout + 2 * b.cout
    return Counts(macs, params)


def count(spec: FamilySpec, arch: Arch) -> Counts:
    """MACs and params of ``arch`` (validated against ``spec.space``) at resolution ``arch.r``."""
    return spec.count(arch)


def count_macs(spec: FamilySpec, arch: Arch) -> int:
    return count(spec, arch).macs


def count_params(spec: FamilySpec, arch: Arch) -> int:
    return count(spec, arch).params
