"""The ``vggedu`` command line: one sub-command per module in ``vggedu/commands/``.

Each command module defines ``register(subparsers)``, which adds its parser and sets
``func=run`` on it. Adding a command is adding one file and one line to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from vggedu import __version__

COMMANDS = ["demo", "info", "train", "transplant", "evaluate", "predict", "features"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vggedu",
        description="VGG very deep ConvNets in NumPy/CuPy: build, inspect, train, transplant, evaluate, "
        "predict with released weights, extract very deep features.",
    )
    parser.add_argument("--version", action="version", version=f"vggedu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"vggedu.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, PermissionError) as err:
        print(f"vggedu {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
