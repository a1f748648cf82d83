"""What every CLI command module shares: defaults and device selection (no torch imports)."""

from __future__ import annotations

import argparse
import random

from ofa_edge.errors import ConfigError
from ofa_edge.supernet.space import ArchConfig, SearchSpace

#: What commands use when --supernet is not given: the project's own supernet, shipped in the
#: package with its accuracy predictor, so every command works offline.
DEFAULT_SUPERNET = "ofa-mbv3-cifar10"


def add_subnet_args(p: argparse.ArgumentParser) -> None:
    """``--arch FILE | --max | --min | --random SEED`` and ``--r``: which subnet a command is about."""
    which = p.add_mutually_exclusive_group()
    which.add_argument("--arch", help="arch JSON file ({ks, e, d, r})")
    which.add_argument("--max", action="store_true", help="the largest subnet")
    which.add_argument("--min", action="store_true", help="the smallest subnet")
    which.add_argument(
        "--random", type=int, metavar="SEED", help="a uniformly random subnet, drawn from SEED"
    )
    p.add_argument("--r", type=int, help="override the resolution")


def chosen_subnet(args: argparse.Namespace, space: SearchSpace) -> ArchConfig:
    """The subnet named by :func:`add_subnet_args`' options, validated against ``space``."""
    if args.arch:
        arch = ArchConfig.load(args.arch)
    elif args.max or args.min:
        arch = space.max_arch() if args.max else space.min_arch()
    elif args.random is not None:
        arch = space.sample(random.Random(args.random))
    else:
        raise ConfigError(
            f"{args.command}: name a subnet", hint="pass --arch ARCH.json, --max, --min or --random SEED"
        )
    if args.r is not None:
        arch = ArchConfig(arch.ks, arch.e, arch.d, args.r)
    return arch.validate(space)


def parse_resolutions(text: str | None) -> list[int] | None:
    """``--resolutions 24,32,40`` as a list (None when not given)."""
    if not text:
        return None
    try:
        return [int(r) for r in text.split(",")]
    except ValueError:
        raise ConfigError(f"--resolutions {text!r}: expected e.g. 160,176,192") from None


def select_devices(args: argparse.Namespace, names: list[str]) -> list:
    """The inventory entries named on the command line (or all with ``--all``)."""
    from ofa_edge.devices.inventory import load_inventory

    inventory = load_inventory(args.inventory)
    if getattr(args, "all", False):
        return list(inventory.values())
    if not names:
        raise ConfigError("name at least one device", hint="or pass --all")
    unknown = [n for n in names if n not in inventory]
    if unknown:
        from ofa_edge.errors import UnknownName

        raise UnknownName("device", unknown[0], list(inventory))
    return [inventory[n] for n in names]
