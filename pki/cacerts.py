"""Istio's plug-in CA files, the ``cacerts`` layout, on disk and as a Kubernetes Secret.

Called by ``isthmus pki issue-intermediate`` (writes it), ``isthmus pki issue`` and the CA
service (read it). The layout (identity.md, "Istio's plug-in CA files"):

- ``ca-cert.pem``: the cluster's intermediate (a CA);
- ``ca-key.pem``: its key, PKCS#8, mode 0600, unencrypted (istiod reads it as is);
- ``root-cert.pem``: the shared root; during a root rotation, the trust bundle with both roots
  (Istio reads every certificate of this file as a trust anchor);
- ``cert-chain.pem``: the intermediate, then the root that signed it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pki.authority import Authority
from pki.bundle import TrustBundle
from pki.errors import LayoutError, PkiError
from pki.files import write_file
from pki.keys import read_private_key, write_private_key
from pki.pem import certificates_to_pem, load_certificate, load_certificates

CA_CERT = "ca-cert.pem"
CA_KEY = "ca-key.pem"
ROOT_CERT = "root-cert.pem"
CERT_CHAIN = "cert-chain.pem"
FILES = (CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN)
SECRET_NAME = "cacerts"


@dataclass(frozen=True, slots=True)
class CaCerts:
    """A cluster CA read from ``cacerts``: the authority that signs, and the trust bundle."""

    authority: Authority
    bundle: TrustBundle


def write_cacerts(directory: Path, authority: Authority, bundle: TrustBundle) -> None:
    """Write the four files into ``directory`` (created if needed); the key with mode 0600."""
    _check_root_trusted(authority, bundle, directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_private_key(directory / CA_KEY, authority.key)
    write_file(directory / CA_CERT, certificates_to_pem([authority.cert]))
    write_file(directory / CERT_CHAIN, certificates_to_pem(authority.full_chain))
    write_file(directory / ROOT_CERT, bundle.to_pem())


def read_cacerts(directory: Path, passphrase: bytes | None = None) -> CaCerts:
    """Read and check a ``cacerts`` directory: key matches, chain links, root in the bundle."""
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise LayoutError(
            f"{directory}: not a cacerts directory (missing {', '.join(missing)})",
            rule="cacerts-missing",
        )
    try:
        cert = load_certificate(_read(directory / CA_CERT), source=str(directory / CA_CERT))
        chain = load_certificates(_read(directory / CERT_CHAIN), source=str(directory / CERT_CHAIN))
        bundle = TrustBundle.from_pem(
            _read(directory / ROOT_CERT), source=str(directory / ROOT_CERT)
        )
    except PkiError as exc:
        raise LayoutError(str(exc), rule=exc.rule) from exc
    if chain[0] != cert:
        raise LayoutError(
            f"{directory / CERT_CHAIN}: must start with {CA_CERT}", rule="cacerts-chain"
        )
    key = read_private_key(directory / CA_KEY, passphrase)
    try:
        authority = Authority.load(cert, key, tuple(chain[1:]))
    except PkiError as exc:
        raise LayoutError(f"{directory}: {exc}", rule=exc.rule) from exc
    _check_root_trusted(authority, bundle, directory)
    return CaCerts(authority, bundle)


def secret_yaml(directory: Path, *, namespace: str = "istio-system") -> str:
    """The ``cacerts`` v1 Secret holding the four files of ``directory``, as YAML."""
    return render_secret(SECRET_NAME, namespace, {name: _read(directory / name) for name in FILES})


def render_secret(name: str, namespace: str, data: Mapping[str, bytes]) -> str:
    """A v1 Opaque Secret with ``data`` base64-encoded, keys in the order given.

    Written by hand: every value is a quoted scalar of a fixed alphabet, so no YAML library is
    needed to get it right.
    """
    lines = [
        "apiVersion: v1",
        "kind: Secret",
        "metadata:",
        f"  name: {_quote(name)}",
        f"  namespace: {_quote(namespace)}",
        "type: Opaque",
        "data:",
    ]
    lines += [f"  {_quote(key)}: {base64.b64encode(value).decode()}" for key, value in data.items()]
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _check_root_trusted(authority: Authority, bundle: TrustBundle, where: Path) -> None:
    if authority.root not in bundle:
        raise LayoutError(
            f"{where}: the root that signed {CA_CERT} is not in {ROOT_CERT}: "
            "workloads would not trust their own certificates",
            rule="cacerts-root",
        )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LayoutError(f"{path}: cannot read: {exc.strerror}", rule="unreadable") from exc
