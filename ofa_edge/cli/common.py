"""What every CLI command module shares: defaults and device selection (no torch imports)."""

from __future__ import annotations

import argparse

from ofa_edge.errors import ConfigError

#: What commands use when --supernet is not given.
DEFAULT_SUPERNET = "ofa_mbv3_d234_e346_k357_w1.0"
#: The supernet ``specialize`` and ``demo`` use: the project's own, shipped with its predictor.
SPECIALIZE_SUPERNET = "ofa-mbv3-cifar10"


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
