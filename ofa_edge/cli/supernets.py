"""``ofa-edge supernets`` and ``count``: the registry, and the MACs and params of a subnet."""

from __future__ import annotations

import argparse
from typing import Any

from ofa_edge.cli.common import add_command, add_subnet_args, add_supernet, chosen_subnet
from ofa_edge.cli.output import Output


def _cmd_supernets(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.supernet.registry import list_supernets
    from ofa_edge.supernet.specialized import list_specialized

    if args.specialized:
        nets = list_specialized()
        text = [
            f"{n.id:42s} {n.target:13s} {n.budget:g} {n.unit:6s} top-1 {n.top1:4.1f}  {n.supernet}"
            for n in nets
        ]
        out.result("specialized", {"specialized": [n.to_dict() for n in nets]}, "\n".join(text))
        return 0
    infos = list_supernets()
    lines = [f"{i.name:36s} {i.description}" for i in infos]
    out.result(
        "supernets",
        {"supernets": [{"name": i.name, "description": i.description, "url": i.url} for i in infos]},
        "\n".join(lines),
    )
    return 0


def _cmd_count(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.supernet.registry import get_supernet_info

    spec = get_supernet_info(args.supernet).spec  # nothing to build: the spec counts
    arch = chosen_subnet(args, spec)
    c = spec.count(arch)
    out.result(
        "count",
        {"supernet": args.supernet, "arch": arch.to_dict(), "macs": c.macs, "params": c.params},
        f"{args.supernet} @ {arch.r}px: {c.macs / 1e6:.1f}M MACs, {c.params / 1e6:.2f}M params",
    )
    return 0


def register(sub: Any) -> None:
    """Add ``supernets`` and ``count``."""
    p = add_command(sub, "supernets", "list the registered supernets")
    p.add_argument(
        "--specialized",
        action="store_true",
        help="list MIT's 50 specialized nets instead (ids for `export --specialized`)",
    )
    p.set_defaults(func=_cmd_supernets)

    p = add_command(sub, "count", "MACs and params of a subnet")
    add_supernet(p)
    add_subnet_args(p)
    p.set_defaults(func=_cmd_count)
