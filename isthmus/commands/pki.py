"""``isthmus pki``: the shared root, cluster intermediates, workload certificates, root rotation.

DESIGN.md §6 and docs/pki.md. Each sub-command has an ``_add_<name>`` function that adds its
parser and a ``_<name>`` handler; :func:`register` calls the adders in :data:`_ADDERS`, so a new
sub-command is one function and one list entry. The work is done by ``pki``; this module parses
arguments, reads passphrase files and reports. Errors from ``pki`` are printed on one line and
the command exits 1; bad arguments exit 2 (argparse).
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from pki import cacerts, rotation
from pki.authority import (
    DEFAULT_INTERMEDIATE_TTL,
    DEFAULT_LEAF_TTL,
    DEFAULT_ROOT_TTL,
    MAX_LEAF_TTL,
    Authority,
)
from pki.bundle import TrustBundle
from pki.errors import LayoutError, PkiError
from pki.files import write_file
from pki.keys import KeyType, generate_key, read_passphrase_file, write_private_key
from pki.pem import certificates_to_pem
from pki.rootdir import BUNDLE, RootDir, init_root
from pki.service.tokens import TokenChecker
from pki.spiffe import parse_spiffe_id

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

_DURATION_PART = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# Files that ``isthmus pki issue`` writes.
LEAF_CERT = "cert.pem"
LEAF_KEY = "key.pem"
LEAF_CHAIN = "chain.pem"
LEAF_BUNDLE = "bundle.pem"


def parse_duration(value: str) -> datetime.timedelta:
    """``90s``, ``15m``, ``24h``, ``30d`` or a sum such as ``1h30m``; must be positive."""
    text = value.strip().lower()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 24h, 30m or 365d, got {value!r}"
        )
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"the duration must be positive, got {value!r}")
    return datetime.timedelta(seconds=seconds)


def register(sub: SubParsers) -> None:
    parser = sub.add_parser("pki", help="roots, intermediates, workload certificates")
    psub = parser.add_subparsers(dest="pki_command", required=True, metavar="COMMAND")
    for add in _ADDERS:
        add(psub)


# --- init-root -------------------------------------------------------------------------------


def _add_init_root(psub: SubParsers) -> None:
    cmd = psub.add_parser("init-root", help="make the shared root CA")
    cmd.add_argument("--trust-domain", required=True, metavar="TD", help="e.g. mesh.example")
    cmd.add_argument("--out", required=True, type=Path, metavar="DIR", help="root directory")
    _key_type_arguments(cmd)
    cmd.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help="encrypt the root key with the passphrase in FILE",
    )
    cmd.add_argument(
        "--ttl",
        type=parse_duration,
        default=DEFAULT_ROOT_TTL,
        help="lifetime of the root (default 3650d)",
    )
    cmd.set_defaults(handler=_guarded(_init_root))


def _init_root(args: argparse.Namespace) -> int:
    state = init_root(
        args.out,
        args.trust_domain,
        key_type=KeyType.from_cli(args.key_type, args.rsa_bits),
        passphrase=_passphrase(args),
        ttl=args.ttl,
    )
    print(f"root for trust domain {state.trust_domain} written to {args.out}")
    print(f"  trust bundle: {args.out / BUNDLE}")
    return 0


# --- issue-intermediate ----------------------------------------------------------------------


def _add_issue_intermediate(psub: SubParsers) -> None:
    cmd = psub.add_parser("issue-intermediate", help="make a cluster CA in Istio's cacerts layout")
    cmd.add_argument("--root", required=True, type=Path, metavar="DIR", help="root directory")
    cmd.add_argument("--cluster", required=True, metavar="NAME", help="cluster name (DNS label)")
    cmd.add_argument("--out", required=True, type=Path, metavar="DIR", help="cacerts directory")
    cmd.add_argument(
        "--k8s-secret", action="store_true", help="also print the cacerts Secret as YAML on stdout"
    )
    cmd.add_argument("--namespace", default="istio-system", help="the Secret's namespace")
    cmd.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help="passphrase of the root key, if it is encrypted",
    )
    _key_type_arguments(cmd)
    cmd.add_argument(
        "--ttl",
        type=parse_duration,
        default=DEFAULT_INTERMEDIATE_TTL,
        help="lifetime of the intermediate (default 365d)",
    )
    cmd.set_defaults(handler=_guarded(_issue_intermediate))


def _issue_intermediate(args: argparse.Namespace) -> int:
    root_dir = RootDir(args.root)
    root, state = root_dir.signing_authority(_passphrase(args))
    bundle = root_dir.bundle(state)
    key = generate_key(KeyType.from_cli(args.key_type, args.rsa_bits))
    cert = root.issue_intermediate(key.public_key(), args.cluster, ttl=args.ttl)
    intermediate = Authority.load(cert, key, root.full_chain)
    cacerts.write_cacerts(args.out, intermediate, bundle)
    report = sys.stderr if args.k8s_secret else sys.stdout
    print(
        f"intermediate for cluster {args.cluster} written to {args.out} "
        f"({', '.join(cacerts.FILES)})",
        file=report,
    )
    if len(bundle) > 1:
        print(f"  root rotation in progress ({state.phase.value}): {cacerts.ROOT_CERT} holds "
              f"{len(bundle)} roots", file=report)  # fmt: skip
    if args.k8s_secret:
        sys.stdout.write(cacerts.secret_yaml(args.out, namespace=args.namespace))
    return 0


# --- issue -----------------------------------------------------------------------------------


def _add_issue(psub: SubParsers) -> None:
    cmd = psub.add_parser("issue", help="make a workload certificate (X.509-SVID)")
    cmd.add_argument(
        "--ca",
        required=True,
        type=Path,
        metavar="DIR",
        help="a cacerts directory, or a root directory",
    )
    cmd.add_argument(
        "--spiffe-id",
        required=True,
        metavar="ID",
        help="spiffe://<td>/ns/<namespace>/sa/<serviceaccount>",
    )
    cmd.add_argument("--out", required=True, type=Path, metavar="DIR")
    cmd.add_argument(
        "--ttl",
        type=parse_duration,
        default=DEFAULT_LEAF_TTL,
        help=f"lifetime (default 24h, at most {MAX_LEAF_TTL.days}d)",
    )
    cmd.add_argument(
        "--dns",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS SAN besides the SPIFFE ID (repeatable)",
    )
    cmd.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help="passphrase of the CA key, if it is encrypted",
    )
    _key_type_arguments(cmd, default_bits=2048)
    cmd.set_defaults(handler=_guarded(_issue))


def _issue(args: argparse.Namespace) -> int:
    spiffe_id = parse_spiffe_id(args.spiffe_id)
    authority, bundle = _load_ca(args.ca, _passphrase(args))
    key = generate_key(KeyType.from_cli(args.key_type, args.rsa_bits))
    cert = authority.sign_leaf(key.public_key(), spiffe_id, ttl=args.ttl, dns_names=tuple(args.dns))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_private_key(out / LEAF_KEY, key)
    write_file(out / LEAF_CERT, certificates_to_pem([cert]))
    write_file(out / LEAF_CHAIN, certificates_to_pem([cert, *authority.full_chain]))
    write_file(out / LEAF_BUNDLE, bundle.to_pem())
    print(
        f"{spiffe_id} valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z written to {out} "
        f"({LEAF_CERT}, {LEAF_KEY}, {LEAF_CHAIN}, {LEAF_BUNDLE})"
    )
    return 0


def _load_ca(directory: Path, passphrase: bytes | None) -> tuple[Authority, TrustBundle]:
    root_dir = RootDir(directory)
    if root_dir.exists():
        authority, state = root_dir.signing_authority(passphrase)
        return authority, root_dir.bundle(state)
    if (directory / cacerts.CA_CERT).exists():
        found = cacerts.read_cacerts(directory, passphrase)
        return found.authority, found.bundle
    raise LayoutError(
        f"--ca {directory}: neither a cacerts directory nor a root directory", rule="ca-missing"
    )


# --- rotate-root -----------------------------------------------------------------------------


def _add_rotate_root(psub: SubParsers) -> None:
    cmd = psub.add_parser("rotate-root", help="rotate the shared root: stage, promote, retire")
    cmd.add_argument("step", choices=[step.value for step in rotation.Step])
    cmd.add_argument("--root", required=True, type=Path, metavar="DIR", help="root directory")
    cmd.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help="stage: passphrase of the root keys, if they are encrypted",
    )
    cmd.add_argument(
        "--key-type",
        choices=["ec", "rsa"],
        default=None,
        help="stage: key type of the new root (default: that of the current root)",
    )
    cmd.add_argument("--rsa-bits", type=int, choices=[2048, 3072], default=3072)
    cmd.add_argument(
        "--ttl",
        type=parse_duration,
        default=DEFAULT_ROOT_TTL,
        help="stage: lifetime of the new root (default 3650d)",
    )
    cmd.set_defaults(handler=_guarded(_rotate_root))


_NEXT = {
    rotation.Step.STAGE: "roll bundle.pem out to every cluster (re-run issue-intermediate), "
    "then run 'rotate-root promote'",
    rotation.Step.PROMOTE: "re-issue every cluster's intermediate (issue-intermediate) and let "
    "workload certificates renew, then run 'rotate-root retire'",
    rotation.Step.RETIRE: "roll the one-root bundle out to every cluster (issue-intermediate)",
}


def _rotate_root(args: argparse.Namespace) -> int:
    step = rotation.Step(args.step)
    if step is rotation.Step.STAGE:
        key_type = None if args.key_type is None else KeyType.from_cli(args.key_type, args.rsa_bits)
        result = rotation.stage(
            args.root, passphrase=_passphrase(args), key_type=key_type, ttl=args.ttl
        )
    elif step is rotation.Step.PROMOTE:
        result = rotation.promote(args.root)
    else:
        result = rotation.retire(args.root)
    state = result.state
    done = "done" if result.changed else "already done, nothing changed"
    print(
        f"rotate-root {step.value}: {done}; phase {state.phase.value}, signing root "
        f"{state.signing}, trusted roots {', '.join(map(str, state.trusted))}"
    )
    print(f"  next: {_NEXT[step]}")
    return 0


# --- serve -----------------------------------------------------------------------------------


def _add_serve(psub: SubParsers) -> None:
    cmd = psub.add_parser("serve", help="run the CA service: sign workload CSRs for tokens")
    cmd.add_argument(
        "--ca",
        required=True,
        type=Path,
        metavar="DIR",
        help="a cacerts directory, or a root directory",
    )
    cmd.add_argument(
        "--listen", required=True, type=_hostport, metavar="HOST:PORT", help="port 0: any free port"
    )
    cmd.add_argument("--trust-domain", required=True, metavar="TD", help="must be the CA's")
    tokens = cmd.add_mutually_exclusive_group(required=True)
    tokens.add_argument(
        "--bootstrap-tokens",
        type=Path,
        metavar="FILE",
        help="YAML mapping token -> {namespace, serviceAccount}, reloaded when it changes",
    )
    tokens.add_argument(
        "--kubeconfig", type=Path, metavar="FILE", help="check tokens with TokenReviews"
    )
    tokens.add_argument(
        "--in-cluster", action="store_true", help="check tokens with TokenReviews, as this pod"
    )
    cmd.add_argument(
        "--token-audience",
        action="append",
        default=None,
        metavar="AUD",
        help="TokenReview audience the token must carry (repeatable; default isthmus-ca)",
    )
    cmd.add_argument(
        "--max-ttl",
        type=parse_duration,
        default=DEFAULT_LEAF_TTL,
        help="longest lifetime a request may ask for (default 24h); the default is 24h or less",
    )
    cmd.add_argument(
        "--audit-log",
        type=Path,
        metavar="FILE",
        help="append JSON audit lines here (default stdout)",
    )
    cmd.add_argument(
        "--server-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS name or IP clients use to reach the service (repeatable)",
    )
    cmd.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help="passphrase of the CA key, if it is encrypted (root directories only)",
    )
    cmd.set_defaults(handler=_guarded(_serve))


def _hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (port 0-65535), got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from pki.service.app import ServiceSettings, build_app
    from pki.service.audit import AuditLog
    from pki.service.bootstrap import BootstrapTokens
    from pki.service.server import CaServer, serve_until_signalled
    from pki.service.server_cert import ServerCertificate, server_names

    if args.max_ttl > MAX_LEAF_TTL:
        raise LayoutError(f"--max-ttl: at most {MAX_LEAF_TTL.days}d", rule="ttl-too-long")
    authority, bundle = _load_ca(args.ca, _passphrase(args))
    found = cacerts.CaCerts(authority, bundle)
    settings = ServiceSettings(args.trust_domain, max_ttl=args.max_ttl)
    checker: TokenChecker
    if args.bootstrap_tokens is not None:
        checker = BootstrapTokens(args.bootstrap_tokens)
    else:
        checker = _token_review_checker(args)
    host, port = args.listen
    dns_names, ips = server_names(host, args.server_name)
    certificate = ServerCertificate(lambda: found, dns_names, ips)
    audit = AuditLog(args.audit_log)
    try:
        app = build_app(found, checker, settings, audit=audit)
        server = CaServer(app, certificate, host, port)

        def announce(url: str) -> None:
            print(
                f"isthmus pki serve: CA service for trust domain {settings.trust_domain} on {url}",
                flush=True,
            )

        asyncio.run(serve_until_signalled(server, announce))
    finally:
        audit.close()
    return 0


def _token_review_checker(args: argparse.Namespace) -> TokenChecker:
    from kubernetes.config import ConfigException

    from pki.service.tokenreview import DEFAULT_AUDIENCES, TokenReviewChecker, kube_api_client

    try:
        api_client = kube_api_client(kubeconfig=args.kubeconfig, in_cluster=args.in_cluster)
    except ConfigException as exc:
        raise LayoutError(f"Kubernetes configuration: {exc}", rule="kubeconfig") from exc
    audiences = (
        tuple(a for a in args.token_audience if a) if args.token_audience else DEFAULT_AUDIENCES
    )
    return TokenReviewChecker(api_client, audiences=audiences)


# --- shared ----------------------------------------------------------------------------------


def _key_type_arguments(cmd: argparse.ArgumentParser, *, default_bits: int = 3072) -> None:
    cmd.add_argument(
        "--key-type", choices=["ec", "rsa"], default="ec", help="ec (P-256, default) or rsa"
    )
    cmd.add_argument(
        "--rsa-bits",
        type=int,
        choices=[2048, 3072],
        default=default_bits,
        help=f"RSA key size (default {default_bits})",
    )


def _passphrase(args: argparse.Namespace) -> bytes | None:
    path: Path | None = args.passphrase_file
    return None if path is None else read_passphrase_file(path)


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run ``handler``; a ``pki`` or file error becomes one line on stderr and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except PkiError as exc:
            print(f"isthmus pki {args.pki_command}: {exc}", file=sys.stderr)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"isthmus pki {args.pki_command}: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1

    return run


_ADDERS: list[Callable[[SubParsers], None]] = [
    _add_init_root,
    _add_issue_intermediate,
    _add_issue,
    _add_rotate_root,
    _add_serve,
]
