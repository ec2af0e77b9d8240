"""``isthmus gateway run``: start a proxy in one of its roles (DESIGN.md §7)."""

from __future__ import annotations

import argparse
import os
import sys


def _hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _workers(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("--workers must be at least 1")
    return n


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gw = sub.add_parser("gateway", help="run the proxy")
    gsub = gw.add_subparsers(dest="gateway_command", required=True, metavar="COMMAND")
    run = gsub.add_parser("run", help="run a gateway or sidecar")
    run.add_argument("--role", choices=["ingress", "eastwest", "sidecar"], default="ingress")
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", metavar="DIR", help="directory of Kubernetes YAML")
    src.add_argument("--control-plane", metavar="URL", help="federation controller URL")
    run.add_argument(
        "--admin",
        type=_hostport,
        default=("127.0.0.1", 15000),
        metavar="HOST:PORT",
        help="admin API address (default 127.0.0.1:15000)",
    )
    run.add_argument("--workers", type=_workers, default=1, help="worker processes")
    run.add_argument("--no-watch", action="store_true",
                     help="reload only on SIGHUP, not on file changes")  # fmt: skip
    run.add_argument("--workload", default="isthmus-ingress",
                     help="workload name reported in metrics")  # fmt: skip
    run.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "default"))
    run.add_argument("--cluster", default=os.environ.get("ISTHMUS_CLUSTER", "Kubernetes"))
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    if args.role != "ingress":
        print(f"isthmus: the {args.role} role is not available yet", file=sys.stderr)
        return 2
    if args.control_plane:
        print("isthmus: --control-plane needs the federation controller, not available yet",
              file=sys.stderr)  # fmt: skip
        return 2
    if not os.path.isdir(args.config):
        print(f"isthmus: --config {args.config}: not a directory", file=sys.stderr)
        return 2
    from gateway.roles.ingress import run_ingress

    return run_ingress(
        args.config,
        admin=args.admin,
        workers=args.workers,
        workload=args.workload,
        namespace=args.namespace,
        cluster=args.cluster,
        watch=not args.no_watch,
    )
