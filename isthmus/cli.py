"""The ``isthmus`` command tree (DESIGN.md §7).

Each sub-command lives in its own module under ``isthmus.commands`` and exposes
``register(subparsers)``; this module only assembles them and dispatches. When the first
argument names a command, only that command's module is imported: every process start
(controllers, proxy workers) would otherwise pay for importing all of them (the PKI
commands alone load cryptography's x509).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Command name -> its module, in the order ``isthmus --help`` lists them.
COMMANDS = {
    "gateway": "isthmus.commands.gateway",
    "catalog": "isthmus.commands.catalog",
    "demo": "isthmus.commands.demo",
    "federation": "isthmus.commands.federation",
    "pki": "isthmus.commands.pki",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of ``only`` (a key of ``COMMANDS``)."""
    parser = argparse.ArgumentParser(prog="isthmus", description="Isthmus multi-cluster mesh")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    first = args_list[0] if args_list else None
    parser = build_parser(first if first in COMMANDS else None)
    args = parser.parse_args(args_list)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
