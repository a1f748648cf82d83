"""MACs and parameter counts of any subnet at any resolution, computed from the layout alone.

Counted as OFA's ``count_net_flops`` / ``count_parameters`` do: convolutions and the linear
classifier contribute MACs (BN, activations, pooling and the residual add do not); parameters
are every learnable tensor of the extracted static subnet, BN affine terms included.
"""

from __future__ import annotations

from dataclasses import dataclass

from ofa_edge.supernet.space import ArchConfig
from ofa_edge.supernet.spec import BlockSpec, MBv3Spec


@dataclass(frozen=True)
class Counts:
    macs: int
    params: int


def _block_counts(b: BlockSpec) -> Counts:
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


def count(spec: MBv3Spec, arch: ArchConfig) -> Counts:
    """MACs and params of ``arch`` (validated against ``spec.space``) at resolution ``arch.r``."""
    arch = arch.validate(spec.space)
    c0, fe, lc, n = spec.first_conv_width, spec.final_expand_width, spec.last_channel, spec.n_classes
    first_px = spec.stem_size(arch.r) ** 2
    macs = 3 * c0 * 9 * first_px
    params = 3 * c0 * 9 + 2 * c0
    blocks = spec.blocks(arch)
    for b in blocks:
        c = _block_counts(b)
        macs, params = macs + c.macs, params + c.params
    last = blocks[-1]
    macs += last.cout * fe * last.out_size**2 + fe * lc + lc * n
    params += last.cout * fe + 2 * fe + fe * lc + lc * n + n
    return Counts(macs, params)


def count_macs(spec: MBv3Spec, arch: ArchConfig) -> int:
    return count(spec, arch).macs


def count_params(spec: MBv3Spec, arch: ArchConfig) -> int:
    return count(spec, arch).params
