"""The ops a supernet runs, as latency-table keys (MIT's key format, so tables convert both ways).

A subnet is a sum of ops, which its family lists (:meth:`FamilySpec.ops`): for OFA-MBv3 the first
conv, each block it runs (input size, in/out/mid channels, kernel, stride, shortcut, SE,
activation), the final expand conv, the pooling, the feature-mix conv and the classifier. Blocks
2-4 of a stage have the same shape, so a supernet at one resolution has few distinct ops
(OFA-MBv3: 96).
"""

from __future__ import annotations

from collections.abc import Iterable

from ofa_edge.supernet.family import Arch, FamilySpec, Op

__all__ = ["Op", "enumerate_ops", "subnet_ops"]


def subnet_ops(spec: FamilySpec, arch: Arch) -> list[Op]:
    """The ops ``arch`` runs, in order; its latency is (about) the sum of theirs."""
    return spec.ops(arch)


def enumerate_ops(spec: FamilySpec, resolutions: Iterable[int]) -> list[Op]:
    """Every distinct op any subnet can run at these resolutions (deduplicated, sorted)."""
    found: dict[str, Op] = {}
    for r in resolutions:
        for op in spec.distinct_ops(r):
            found.setdefault(op.key, op)
    return sorted(found.values(), key=lambda op: op.key)
