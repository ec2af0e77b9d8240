"""Self-signed server certificates for local use: the demo, the examples and tests.

``isthmus demo`` calls :func:`issue_self_signed_server` to make the certificate that the
ingress gateway's HTTPS listener serves; a client trusts it by pinning the certificate itself
(``curl --cacert``). Workload SVIDs and the CA hierarchy of DESIGN.md §6 are a separate
matter and do not go through here.

Sans-IO: this module makes keys and PEM text and never touches files or sockets. Where the
PEM goes (a file, a Kubernetes Secret) is the caller's business.
"""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Certificates start a little in the past so that a client whose clock is slightly behind
# does not reject a certificate made a second ago.
_BACKDATE = datetime.timedelta(minutes=5)
# X.520 caps commonName at 64 characters; longer names appear in the SAN only.
_MAX_COMMON_NAME = 64


def issue_self_signed_server(
    hostnames: list[str],
    days: int = 30,
    *,
    now: datetime.datetime | None = None,
) -> tuple[str, str]:
    """Make a self-signed TLS server certificate and its key.

    Returns ``(cert_pem, key_pem)``: the certificate, and an unencrypted PKCS#8 EC P-256 key.
    Every entry of ``hostnames`` becomes a SubjectAltName: an IP address when it parses as
    one, a DNS name otherwise (wildcards such as ``*.example.test`` are allowed). The first
    entry is also the subject's common name. The extended key usage is serverAuth only.

    ``now`` fixes the start of the validity period (tests); it defaults to the current time.
    Raises ``ValueError`` when ``hostnames`` is empty, a name is not ASCII, or ``days`` is
    less than 1.
    """
    if not hostnames:
        raise ValueError("hostnames: at least one name is needed")
    if days < 1:
        raise ValueError(f"days: must be at least 1, got {days}")
    san = x509.SubjectAlternativeName([_general_name(name) for name in hostnames])

    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or datetime.datetime.now(datetime.UTC)) - _BACKDATE
    first = hostnames[0]
    attributes = (
        [x509.NameAttribute(NameOID.COMMON_NAME, first)]
        if len(first) <= _MAX_COMMON_NAME
        else [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Isthmus")]
    )
    name = x509.Name(attributes)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _BACKDATE + datetime.timedelta(days=days))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        # No KeyUsage on purpose: with one present, OpenSSL only treats a certificate as its
        # own issuer when keyCertSign is set, and RFC 5280 allows that bit only on CAs.
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return cert_pem, key_pem


def _general_name(name: str) -> x509.GeneralName:
    """The SAN entry for ``name``: an IP address if it parses as one, else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not name or not name.isascii():
        raise ValueError(f"hostnames: {name!r} is not an ASCII DNS name (use the IDNA A-label)")
    return x509.DNSName(name.lower())
