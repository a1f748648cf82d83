"""What every CLI command module shares: the dialect's options (one spelling each), defaults
and device selection (no torch imports).

The dialect: the devices a command reaches are positional ``NAME``s (one or several), ``--all``
or ``--group NAME`` (``search``, which reaches none, names the devices whose tables it uses with a
repeatable ``--device NAME``); ``--precision fp32|fp16|int8`` (``--int8`` its alias); ``--threads``
is always the device's threads, ``--host-threads`` torch's on this machine; ``--inventory`` only on
commands that reach devices.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
from typing import TYPE_CHECKING, Any

from ofa_edge.devices.spec import PRECISIONS
from ofa_edge.errors import ConfigError

if TYPE_CHECKING:
    from ofa_edge.devices.spec import DeviceSpec
    from ofa_edge.supernet.family import FamilySpec

#: What commands use when --supernet is not given: the project's own supernet, shipped in the
#: package with its accuracy predictor, so every command works offline.
DEFAULT_SUPERNET = "ofa-mbv3-cifar10-v2"
#: The help of every arch file argument: each family's keys (MIT's).
ARCH_HELP = "arch JSON file (MBConv supernets: {ks, e, d, r}; OFA-ResNet: {d, e, w, r})"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except the empty ones (None, False) whose help says what
    leaving the option out means."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_command(sub: Any, name: str, help: str, *, devices: bool = False) -> argparse.ArgumentParser:
    """A subcommand with the shared formatter and ``--json``; ``devices`` adds ``--inventory``
    (only commands that reach a device read the inventory)."""
    p = sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)
    p.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON document on stdout"
    )
    if devices:
        p.add_argument(
            "--inventory",
            metavar="PATH",
            help="device inventory file (default: $OFA_EDGE_INVENTORY, else ./devices.toml, else only local)",
        )
    return p


def add_group(sub: Any, name: str, help: str) -> Any:
    """A command group (``devices``, ``lut``, ``accuracy``): the action its subcommands join."""
    p = sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)
    return p.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


#: Devices a command on several drives at once unless ``--jobs`` says otherwise.
JOBS = 16


def add_device(p: argparse.ArgumentParser) -> None:
    """The positional ``NAME`` of a command on exactly one device."""
    p.add_argument("device", metavar="NAME", help="device name in the inventory (local: this machine)")


def add_devices(p: argparse.ArgumentParser, *, lock: bool = True) -> None:
    """Which devices a command runs on: positional ``NAME``s, ``--all`` or ``--group NAME``
    (several run concurrently, ``--jobs`` at once; ``--ray``: on a Ray farm); ``lock``: the
    command measures there, so it takes each device's lock and offers ``--lock-timeout``."""
    p.add_argument(
        "names", nargs="*", metavar="NAME", help="device names in the inventory (local: this machine)"
    )
    p.add_argument("--all", action="store_true", help="every device in the inventory")
    p.add_argument(
        "--group",
        action="append",
        metavar="GROUP",
        help="every device of an inventory group (repeatable; Ansible inventories: its groups)",
    )
    p.add_argument("--jobs", type=int, default=JOBS, metavar="N", help="devices run at once")
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run each device's work on the node of this Ray farm that advertises device:NAME "
        "(HEAD:6379; default: $OFA_EDGE_RAY_ADDRESS, else from this process)",
    )
    if lock:
        p.add_argument(
            "--lock-timeout",
            type=float,
            metavar="SECONDS",
            help="how long to wait while another command measures on a device, times its slowdown "
            "(default: the inventory's lock_timeout, else 300)",
        )


def add_supernet(
    p: argparse.ArgumentParser,
    help: str = "supernet: a registry name or a supernet entry file (ENTRY.toml)",
    default: str | None = DEFAULT_SUPERNET,
) -> None:
    """``--supernet`` (a registry name or an entry file's path; ``main`` turns the path into its
    name), defaulting to the project's shipped supernet."""
    p.add_argument("--supernet", default=default, metavar="ID|ENTRY.toml", help=help)


def add_precision(p: argparse.ArgumentParser, what: str) -> None:
    """``--precision fp32|fp16|int8`` and its alias ``--int8``; ``what`` says what the precision is of."""
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help=what)
    p.add_argument(
        "--int8", dest="precision", action="store_const", const="int8", help="alias of --precision int8"
    )


def add_device_threads(p: argparse.ArgumentParser, help: str) -> None:
    """``--threads N``: always the threads a model runs with on the device."""
    p.add_argument("--threads", type=int, metavar="N", help=help)


def add_host_threads(p: argparse.ArgumentParser) -> None:
    """``--host-threads N``: torch threads on this machine (training, evaluation, export)."""
    p.add_argument(
        "--host-threads",
        type=int,
        metavar="N",
        help="torch threads on this machine (default: every core; on a busy machine 1 is often fastest)",
    )


def set_host_threads(args: argparse.Namespace) -> None:
    """Apply ``--host-threads`` to torch (nothing when it is not given)."""
    if args.host_threads:
        import torch

        torch.set_num_threads(args.host_threads)


def add_subnet_args(p: argparse.ArgumentParser) -> None:
    """``--arch FILE | --max | --min | --random SEED`` and ``--r``: which subnet a command is about."""
    which = p.add_mutually_exclusive_group()
    which.add_argument("--arch", metavar="ARCH.json", help=ARCH_HELP)
    which.add_argument("--max", action="store_true", help="the largest subnet")
    which.add_argument("--min", action="store_true", help="the smallest subnet")
    which.add_argument(
        "--random", type=int, metavar="SEED", help="a uniformly random subnet, drawn from SEED"
    )
    p.add_argument("--r", type=int, help="override the resolution (default: the subnet's own)")


def chosen_subnet(args: argparse.Namespace, spec: FamilySpec) -> Any:
    """The subnet named by :func:`add_subnet_args`' options, validated against ``spec``'s space."""
    space = spec.space
    if args.arch:
        return spec.load_arch(args.arch, args.r)
    if args.max or args.min:
        arch = space.max_arch() if args.max else space.min_arch()
    elif args.random is not None:
        arch = space.sample(random.Random(args.random))
    else:
        raise ConfigError(
            f"{args.command}: name a subnet", hint="pass --arch ARCH.json, --max, --min or --random SEED"
        )
    return spec.checked(arch, args.r)


def parse_resolutions(text: str | None) -> list[int] | None:
    """``--resolutions 24,32,40`` as a list (None when not given)."""
    if not text:
        return None
    try:
        return [int(r) for r in text.split(",")]
    except ValueError:
        raise ConfigError(f"--resolutions {text!r}: expected e.g. 160,176,192") from None


def select_devices(args: argparse.Namespace, names: list[str]) -> list[DeviceSpec]:
    """The inventory entries ``names`` and ``--group`` name (every one with ``--all``)."""
    from ofa_edge.devices.inventory import load_inventory, select

    inventory = load_inventory(args.inventory)
    groups = getattr(args, "group", None) or []
    if getattr(args, "all", False):
        specs = list(inventory.values())
    elif names or groups:
        specs = select(inventory, names, groups)
    else:
        raise ConfigError("name at least one device", hint="or pass --all or --group GROUP")
    if getattr(args, "lock_timeout", None) is not None:
        specs = [dataclasses.replace(spec, lock_timeout=args.lock_timeout) for spec in specs]
    return specs


def several_devices(args: argparse.Namespace) -> bool:
    """Whether the command runs as a fleet (several names, ``--all`` or ``--group``): concurrent
    devices and a summary; one name keeps the one-device output."""
    return bool(getattr(args, "all", False) or getattr(args, "group", None)) or len(args.names) != 1


def add_objective(p: argparse.ArgumentParser) -> None:
    """``--objective``: what the search maximizes (``macs`` needs no accuracy predictor)."""
    p.add_argument(
        "--objective",
        default="accuracy",
        choices=["accuracy", "macs"],
        help="what to maximize under the budgets (macs: needs no predictor, for supernets without one)",
    )
