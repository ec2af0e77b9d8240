"""The ``isthmus`` command tree (DESIGN.md §7).

Each sub-command lives in its own module under ``isthmus.commands`` and exposes
``register(subparsers)``; this module only assembles them and dispatches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from isthmus.commands import catalog, demo, federation, gateway
from isthmus.commands import pki as pki_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isthmus", description="Isthmus multi-cluster mesh")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gateway.register(sub)
    catalog.register(sub)
    demo.register(sub)
    federation.register(sub)
    pki_commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
