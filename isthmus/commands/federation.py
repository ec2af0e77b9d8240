"""``isthmus federation run`` and ``isthmus federation status`` (DESIGN.md §7)."""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import traceback
import urllib.error
import urllib.request

from isthmus.commands.gateway import _hostport


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fed = sub.add_parser("federation", help="the federation controller of one cluster")
    fsub = fed.add_subparsers(dest="federation_command", required=True, metavar="COMMAND")

    run = fsub.add_parser("run", help="run the controller")
    run.add_argument("--cluster", required=True, help="this cluster's name")
    run.add_argument("--catalog", required=True, metavar="URL",
                     help="Consul (or `isthmus catalog serve`) HTTP address")  # fmt: skip
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("--kubeconfig", metavar="FILE", help="read Kubernetes with this kubeconfig")
    src.add_argument("--in-cluster", action="store_true", help="read Kubernetes as a pod")
    src.add_argument("--source", metavar="DIR", help="read a directory of YAML instead")
    run.add_argument("--listen", type=_hostport, default=("127.0.0.1", 15010),
                     metavar="HOST:PORT",
                     help="snapshot API and /metrics (default 127.0.0.1:15010)")  # fmt: skip
    run.add_argument("--gateway", type=_hostport, default=("127.0.0.1", 15443),
                     metavar="HOST:PORT", help="this cluster's east-west gateway, as other "
                     "clusters reach it (default 127.0.0.1:15443)")  # fmt: skip
    run.add_argument("--trust-domain", default="cluster.local")
    run.add_argument("--locality", default="", help="region/zone/subzone of this cluster")
    run.add_argument("--session-ttl", type=int, default=15,
                     help="leader session TTL in seconds (10..86400, default 15)")  # fmt: skip
    run.add_argument("--lock-delay", type=int, default=5,
                     help="leader lock delay in seconds (default 5)")  # fmt: skip
    run.add_argument("--anti-entropy", type=float, default=30.0,
                     help="seconds between anti-entropy passes (default 30)")  # fmt: skip
    run.add_argument("--heartbeat-ttl", type=float, default=30.0,
                     help="seconds after its last heartbeat that other clusters stop sending "
                     "this cluster traffic (default 30; the heartbeat runs every third of it, "
                     "at most every 10 s)")  # fmt: skip
    run.add_argument("--replica-id", default=None, help="this replica's name (default: host:pid)")
    run.add_argument("--log-level", default="INFO")
    tls = run.add_argument_group("mTLS for the snapshot API (all three, or none: plain HTTP)")
    tls.add_argument("--cert", metavar="FILE", help="the controller's SVID chain, PEM")
    tls.add_argument("--key", metavar="FILE", help="its private key, PEM")
    tls.add_argument("--bundle", metavar="FILE", help="the mesh trust bundle, PEM")
    run.set_defaults(handler=_run)

    status = fsub.add_parser("status", help="every proxy, its version and whether it is in sync")
    status.add_argument("--control-plane", default="http://127.0.0.1:15010", metavar="URL")
    status.add_argument("--bundle", metavar="FILE",
                        help="the trust bundle to verify an https:// control plane")  # fmt: skip
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.set_defaults(handler=_status)


def _run(args: argparse.Namespace) -> int:
    from federation.consul import SyncSettings
    from federation.controller import ControllerConfig, run_until_signalled
    from federation.logs import configure

    configure(args.log_level)
    try:
        settings = SyncSettings(
            session_ttl_s=args.session_ttl,
            lock_delay_s=args.lock_delay,
            anti_entropy_interval_s=args.anti_entropy,
            heartbeat_ttl_s=args.heartbeat_ttl,
            heartbeat_interval_s=min(10.0, args.heartbeat_ttl / 3),
        )
    except ValueError as exc:
        print(f"isthmus federation run: {exc}", file=sys.stderr)
        return 2
    given = [f"--{n}" for n in ("cert", "key", "bundle") if getattr(args, n)]
    if given and len(given) != 3:
        print(f"isthmus federation run: {' and '.join(given)}: mTLS needs --cert, --key and "
              "--bundle", file=sys.stderr)  # fmt: skip
        return 2
    config = ControllerConfig(
        cluster=args.cluster,
        catalog=args.catalog,
        source_dir=args.source,
        kubeconfig=args.kubeconfig,
        in_cluster=args.in_cluster,
        listen=args.listen,
        gateway_address=args.gateway[0],
        gateway_port=args.gateway[1],
        trust_domain=args.trust_domain,
        locality=args.locality,
        sync=settings,
        replica_id=args.replica_id,
        tls_files=(args.cert, args.key, args.bundle) if given else None,
    )
    try:
        from gateway.process import eventloop

        return eventloop.run(run_until_signalled(config))
    except Exception as exc:  # a clear line rather than a traceback for setup errors
        print(f"isthmus federation run: {exc}", file=sys.stderr)
        if isinstance(exc, BaseExceptionGroup):  # name what failed, not just "a TaskGroup"
            from federation.controller import leaves

            for leaf in leaves(exc):
                print(f"  caused by {type(leaf).__name__}: {leaf}", file=sys.stderr)
                trace = "".join(traceback.format_exception(leaf))
                print("    " + trace.rstrip().replace("\n", "\n    "), file=sys.stderr)
        return 1


def _status(args: argparse.Namespace) -> int:
    from federation.snapshots.status import format_status

    url = args.control_plane.rstrip("/") + "/v1/proxies"
    context = None
    if url.startswith("https://"):
        if not args.bundle:
            print("isthmus federation status: an https:// control plane needs --bundle",
                  file=sys.stderr)  # fmt: skip
            return 2
        context = _server_checking_context(args.bundle)
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as resp:
            data = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"isthmus federation status: {url}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(format_status(data), end="")
    return 0


def _server_checking_context(bundle: str) -> ssl.SSLContext:
    """Verify the controller's chain to the mesh bundle. Its name is a SPIFFE ID, which
    ``ssl`` does not check: any SVID of the mesh is accepted here (a read-only status)."""
    context = ssl.create_default_context(cafile=bundle)
    context.check_hostname = False
    return context
