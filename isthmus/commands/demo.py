"""``isthmus demo [--clusters N] [--example DIR]``: run Isthmus on this machine (DESIGN.md §7).

Registered by ``isthmus.cli``. Today only the single-cluster ingress demo exists
(:mod:`isthmus.demo`); asking for more clusters says so and exits with status 2. The demo's
modules are imported when the command runs, so that other commands start without them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``demo`` sub-command; its handler returns the process exit code."""
    parser = subparsers.add_parser(
        "demo",
        help="run the local demo: an ingress gateway in front of two echo backends",
        description=(
            "Start two echo backends and an ingress gateway configured from an example "
            "directory of Kubernetes YAML, print curl commands to try, and run until Ctrl-C. "
            "Runtime files (config copy, generated TLS Secret, ca.pem) go to .demo/."
        ),
    )
    parser.add_argument(
        "--clusters",
        type=_positive_int,
        default=1,
        metavar="N",
        help="number of clusters to run side by side (only 1 is available yet)",
    )
    parser.add_argument(
        "--example",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory of Kubernetes YAML to serve (default: examples/ingress)",
    )
    parser.set_defaults(handler=_handle)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _handle(args: argparse.Namespace) -> int:
    if args.clusters > 1:
        print(
            f"isthmus demo: the multi-cluster demo (--clusters {args.clusters}) is not there "
            "yet; run `isthmus demo` for the single-cluster ingress demo",
            file=sys.stderr,
        )
        return EXIT_USAGE

    from isthmus import demo

    options = demo.DemoOptions() if args.example is None else demo.DemoOptions(args.example)
    try:
        return asyncio.run(demo.run(options))
    except demo.DemoError as exc:
        print(f"isthmus demo: {exc}", file=sys.stderr)
        return 1
