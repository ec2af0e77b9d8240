"""``isthmus gateway run``: start a proxy in one of its roles (DESIGN.md §7).

The proxy's own identity (for mTLS) comes from files (``--cert --key --bundle``) or from the
CA service (``--ca-url --ca-bundle --token-file --spiffe-id``); the sidecar role needs one
and its three ports (docs/mtls.md).
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.process.credentials import CredentialSource

_STATIC = ("cert", "key", "bundle")
_MANAGED = ("ca_url", "ca_bundle", "token_file", "spiffe_id")
_SIDECAR_PORTS = ("inbound_port", "app_port", "outbound_port")


def _hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _duration(value: str) -> datetime.timedelta:
    from pki.service.protocol import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {value!r}")
    return int(value)


def _workers(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("--workers must be at least 1")
    return n


DEFAULT_WORKLOAD = "isthmus-ingress"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gw = sub.add_parser("gateway", help="run the proxy")
    gsub = gw.add_subparsers(dest="gateway_command", required=True, metavar="COMMAND")
    run = gsub.add_parser("run", help="run a gateway or sidecar")
    run.add_argument("--role", choices=["ingress", "eastwest", "sidecar"], default="ingress")
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", metavar="DIR", help="directory of Kubernetes YAML")
    src.add_argument("--control-plane", metavar="URL", help="federation controller URL")
    run.add_argument("--proxy-id", default=os.environ.get("POD_NAME") or socket.gethostname(),
                     help="this proxy's id at the control plane (default: $POD_NAME or the "
                     "host name)")  # fmt: skip
    run.add_argument("--cache", metavar="FILE",
                     help="with --control-plane: keep the last applied snapshot in FILE and "
                     "start from it when the controller is unreachable")  # fmt: skip
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
    run.add_argument("--workload", default=DEFAULT_WORKLOAD,
                     help="workload name reported in metrics")  # fmt: skip
    run.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "default"))
    run.add_argument("--cluster", default=os.environ.get("ISTHMUS_CLUSTER", "Kubernetes"))
    _identity_arguments(run)
    run.set_defaults(handler=_run)


def _identity_arguments(run: argparse.ArgumentParser) -> None:
    ident = run.add_argument_group("identity (mTLS): files, or the CA service")
    ident.add_argument("--cert", metavar="FILE", help="SVID chain, PEM (leaf first)")
    ident.add_argument("--key", metavar="FILE", help="its private key, PEM")
    ident.add_argument("--bundle", metavar="FILE", help="trust bundle, PEM")
    ident.add_argument("--ca-url", metavar="URL", help="CA service, e.g. https://ca:15012")
    ident.add_argument("--ca-bundle", metavar="FILE", help="bundle the CA service chains to")
    ident.add_argument("--token-file", metavar="FILE", help="bearer token for the CA service")
    ident.add_argument("--spiffe-id", metavar="ID", help="the SPIFFE ID to ask for")
    ident.add_argument("--cert-ttl", type=_duration, metavar="DURATION",
                       help="lifetime to ask the CA for (default: the CA's, 24h)")  # fmt: skip
    side = run.add_argument_group("sidecar (explicit ports, no iptables)")
    side.add_argument("--inbound-port", type=_port, help="port peers reach (mTLS)")
    side.add_argument("--inbound-address", default="0.0.0.0", help="default 0.0.0.0")
    side.add_argument("--app-port", type=_port, help="the local app's port on 127.0.0.1")
    side.add_argument("--outbound-port", type=_port, help="port the app calls Services through")
    side.add_argument("--outbound-address", default="127.0.0.1", help="default 127.0.0.1")
    side.add_argument("--label", action="append", type=_label, default=[], metavar="KEY=VALUE",
                      help="with --control-plane: a label of the workload, for the policies' "
                      "selectors (repeat for each)")  # fmt: skip


def _label(value: str) -> tuple[str, str]:
    key, eq, val = value.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key, val


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _credentials(args: argparse.Namespace) -> CredentialSource | None:
    """The identity source the flags name; raises ValueError when they do not fit."""
    static = [n for n in _STATIC if getattr(args, n)]
    managed = [n for n in _MANAGED if getattr(args, n)]
    if static and managed:
        raise ValueError(
            f"{_flag(static[0])} and {_flag(managed[0])}: use files or the CA service, not both"
        )
    from gateway.process.credentials import (
        CredentialsRefused,
        ManagedCredentials,
        StaticCredentials,
    )

    if static:
        missing = [_flag(n) for n in _STATIC if n not in static]
        if missing:
            raise ValueError(f"identity from files needs {' and '.join(missing)} too")
        return StaticCredentials(Path(args.cert), Path(args.key), Path(args.bundle))
    if managed:
        missing = [_flag(n) for n in _MANAGED if n not in managed]
        if missing:
            raise ValueError(f"identity from the CA service needs {' and '.join(missing)} too")
        try:
            return ManagedCredentials.of(
                args.ca_url,
                Path(args.ca_bundle),
                Path(args.token_file),
                args.spiffe_id,
                ttl=args.cert_ttl,
            )
        except CredentialsRefused as exc:
            raise ValueError(str(exc)) from None
    return None


def _run(args: argparse.Namespace) -> int:
    try:
        credentials = _credentials(args)
    except ValueError as exc:
        print(f"isthmus: {exc}", file=sys.stderr)
        return 2
    if args.role == "sidecar":
        return _run_sidecar(args, credentials)
    if args.role == "eastwest" and not args.control_plane:
        print("isthmus: the eastwest role routes the services the federation controller "
              "exports: it needs --control-plane URL", file=sys.stderr)  # fmt: skip
        return 2
    if args.control_plane:
        if not args.control_plane.startswith(("http://", "https://")):
            print(f"isthmus: --control-plane {args.control_plane}: expected an http:// or "
                  "https:// URL", file=sys.stderr)  # fmt: skip
            return 2
        if args.control_plane.startswith("https://") and credentials is None:
            print("isthmus: --control-plane https://...: the proxy needs an identity for mTLS: "
                  "--cert/--key/--bundle, or --ca-url/--ca-bundle/--token-file/--spiffe-id",
                  file=sys.stderr)  # fmt: skip
            return 2
        from gateway.roles.eastwest import WORKLOAD, run_eastwest
        from gateway.roles.ingress import run_ingress_control_plane

        eastwest = args.role == "eastwest"
        runner = run_eastwest if eastwest else run_ingress_control_plane
        return runner(
            args.control_plane,
            proxy_id=args.proxy_id,
            cache=args.cache,
            admin=args.admin,
            workers=args.workers,
            workload=WORKLOAD if eastwest and args.workload == DEFAULT_WORKLOAD else args.workload,
            namespace=args.namespace,
            cluster=args.cluster,
            credentials=credentials,
        )
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
        credentials=credentials,
    )


def _run_sidecar(args: argparse.Namespace, credentials: CredentialSource | None) -> int:
    missing = [_flag(n) for n in _SIDECAR_PORTS if getattr(args, n) is None]
    if missing:
        print(f"isthmus: the sidecar role needs {', '.join(missing)}", file=sys.stderr)
        return 2
    if credentials is None:
        print(
            "isthmus: the sidecar role needs an identity: --cert/--key/--bundle, or "
            "--ca-url/--ca-bundle/--token-file/--spiffe-id",
            file=sys.stderr,
        )
        return 2
    from gateway.config.sidecar import SidecarPorts

    ports = SidecarPorts(
        inbound_port=args.inbound_port,
        app_port=args.app_port,
        outbound_port=args.outbound_port,
        inbound_address=args.inbound_address,
        outbound_address=args.outbound_address,
    )
    if args.control_plane:
        if not args.control_plane.startswith(("http://", "https://")):
            print(f"isthmus: --control-plane {args.control_plane}: expected an http:// or "
                  "https:// URL", file=sys.stderr)  # fmt: skip
            return 2
        from gateway.roles.sidecar import run_sidecar_control_plane

        return run_sidecar_control_plane(
            args.control_plane,
            ports,
            credentials,
            proxy_id=args.proxy_id,
            cache=args.cache,
            admin=args.admin,
            workers=args.workers,
            workload=args.workload,
            namespace=args.namespace,
            labels=tuple(args.label),
            cluster=args.cluster,
        )
    if not os.path.isdir(args.config):
        print(f"isthmus: --config {args.config}: not a directory", file=sys.stderr)
        return 2
    from gateway.roles.sidecar import run_sidecar

    return run_sidecar(
        args.config,
        ports,
        credentials,
        admin=args.admin,
        workers=args.workers,
        workload=args.workload,
        namespace=args.namespace,
        cluster=args.cluster,
        watch=not args.no_watch,
    )
