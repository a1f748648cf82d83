"""``ofa-edge`` entry point: global options, the command modules, and errors rendered.

Each command group lives in its own module with a ``register(sub)`` that adds its subcommands.
An error derived from ``OfaEdgeError`` prints as one line on stderr plus a line saying how to see
its traceback, and exits with its family's code (``ofa_edge.errors.EXIT_CODES``); ``--json`` also
puts one versioned error document on stdout. ``OFA_EDGE_DEBUG=1`` raises it instead. A command
run on several devices keeps each device's error in its summary and exits with the family all
failures share (``ofa_edge.errors.fleet_exit_code``; ``ofa_edge.cli.fleet``).
"""

from __future__ import annotations

import argparse
import os
import sys

from ofa_edge import __version__
from ofa_edge.cli import accuracy, deploy, devices, export, lut, search, supernets, train
from ofa_edge.cli.common import HelpFormatter
from ofa_edge.cli.output import Output
from ofa_edge.errors import EXIT_INTERRUPTED, OfaEdgeError

#: Set to show the traceback of an error instead of its one line.
DEBUG_ENV = "OFA_EDGE_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: global options, then each module's commands."""
    parser = argparse.ArgumentParser(
        prog="ofa-edge",
        description="Specialize once-for-all supernets for your devices.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("--version", action="version", version=f"ofa-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (supernets, devices, lut, train, accuracy, search, export, deploy):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status (0, or the error family's code)."""
    args = build_parser().parse_args(argv)
    out = Output(json_mode=args.json)
    try:
        if getattr(args, "supernet", None) is not None:
            from ofa_edge.supernet.registry import get_supernet_info

            # An entry file's path becomes its name: the id what the command writes records (and
            # names tables by), which resolves to the file for the rest of the command.
            args.supernet = get_supernet_info(args.supernet).name
        return args.func(args, out)
    except OfaEdgeError as err:
        if os.environ.get(DEBUG_ENV):
            raise
        out.error(err)
        print(f"ofa-edge: {DEBUG_ENV}=1 shows the traceback", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        out.error("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
