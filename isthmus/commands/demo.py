"""``isthmus demo [--clusters N] [--example DIR]``: run Isthmus on this machine (DESIGN.md §7).

Registered by ``isthmus.cli``. One cluster runs the ingress demo (:mod:`isthmus.demo`);
``--clusters N`` (2 to 5) runs the multi-cluster demo (:mod:`isthmus.demo_clusters`). The
demo's modules are imported when the command runs, so that other commands start without them.
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
        help="number of clusters to run side by side: 1 (the ingress demo, default) to 5 "
        "(the multi-cluster demo: federation, east-west gateways, sidecars)",
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
    from isthmus import demo

    if args.clusters > 1:
        if args.example is not None:
            print("isthmus demo: --example is for the single-cluster demo; the multi-cluster "
                  "demo brings its own configuration", file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        from isthmus import demo_clusters

        if args.clusters > len(demo_clusters.CLUSTERS):
            print(f"isthmus demo: --clusters {args.clusters}: at most "
                  f"{len(demo_clusters.CLUSTERS)}", file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        try:
            return asyncio.run(demo_clusters.run(demo_clusters.ClustersOptions(args.clusters)))
        except demo.DemoError as exc:
            print(f"isthmus demo: {exc}", file=sys.stderr)
            return 1

    options = demo.DemoOptions() if args.example is None else demo.DemoOptions(args.example)
    try:
        return asyncio.run(demo.run(options))
    except demo.DemoError as exc:
        print(f"isthmus demo: {exc}", file=sys.stderr)
        return 1
