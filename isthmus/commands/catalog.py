"""``isthmus catalog serve``: run the embedded Consul-compatible catalog (DESIGN.md §5, §7).

A single-machine stand-in for Consul's HTTP API, for ``isthmus demo`` and tests; not for
production: use Consul. It prints the address it serves on (with the real port when
``--listen`` asks for port 0) and stops cleanly on SIGTERM/SIGINT after writing ``--data``.
"""

from __future__ import annotations

import argparse
import socket


def _hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (port 0-65535), got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cat = sub.add_parser("catalog", help="the embedded Consul-compatible catalog")
    csub = cat.add_subparsers(dest="catalog_command", required=True, metavar="COMMAND")
    serve = csub.add_parser(
        "serve",
        help="serve Consul's HTTP API on one machine (not for production: use Consul)",
    )
    serve.add_argument(
        "--listen",
        type=_hostport,
        default=("127.0.0.1", 8500),
        metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:8500; port 0 picks a free port)",
    )
    serve.add_argument(
        "--data", metavar="FILE", help="persist the catalog to FILE (loaded at start)"
    )
    serve.add_argument("--datacenter", default="dc1", help="datacenter name (default dc1)")
    serve.add_argument(
        "--node",
        default=socket.gethostname() or "isthmus-catalog",
        help="this catalog's own node name, where sessions go by default (default: hostname)",
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from federation.catalog.server import run

    host, port = args.listen

    def announce(line: str) -> None:
        print(line, flush=True)

    return run(
        host,
        port,
        data=args.data,
        datacenter=args.datacenter,
        node_name=args.node,
        announce=announce,
    )
