"""Tests for pki.issue: the certificate's contents, and that real TLS stacks accept it.

The handshakes run OpenSSL (through ``ssl``) over memory BIOs: the client pins the
certificate as its only trust anchor, as ``curl --cacert`` does in the demo.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki.issue import issue_self_signed_server

NOW = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def _load(cert_pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert_pem.encode())


def test_subject_alt_names_are_dns_names_and_ip_addresses() -> None:
    cert_pem, _ = issue_self_signed_server(["shop.demo.local", "*.Demo.Local", "127.0.0.1", "::1"])
    san = _load(cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    assert san.get_values_for_type(x509.DNSName) == ["shop.demo.local", "*.demo.local"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_key_is_p256_and_matches_the_certificate() -> None:
    cert_pem, key_pem = issue_self_signed_server(["shop.demo.local"])
    cert = _load(cert_pem)
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)

    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.public_key() == key.public_key()
    assert key_pem.startswith("-----BEGIN PRIVATE KEY-----")


def test_server_auth_leaf_that_signs_itself() -> None:
    cert = _load(issue_self_signed_server(["shop.demo.local"])[0])

    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    assert cert.issuer == cert.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "shop.demo.local"
    cert.verify_directly_issued_by(cert)


def test_validity_covers_the_requested_days_and_is_backdated() -> None:
    cert = _load(issue_self_signed_server(["a.test"], days=7, now=NOW)[0])

    assert cert.not_valid_before_utc < NOW
    assert cert.not_valid_before_utc > NOW - datetime.timedelta(hours=1)
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(days=7)


def test_long_first_name_stays_out_of_the_common_name() -> None:
    long_name = ("a" * 60) + ".example.test"
    cert = _load(issue_self_signed_server([long_name])[0])

    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME) == []
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [long_name]


def test_each_call_makes_a_new_key_and_serial() -> None:
    first_cert, first_key = issue_self_signed_server(["a.test"])
    second_cert, second_key = issue_self_signed_server(["a.test"])

    assert first_key != second_key
    assert _load(first_cert).serial_number != _load(second_cert).serial_number


@pytest.mark.parametrize(
    ("hostnames", "days", "message"),
    [
        ([], 30, "hostnames: at least one name"),
        (["a.test"], 0, "days: must be at least 1"),
        (["bücher.test"], 30, "not an ASCII DNS name"),
        ([""], 30, "not an ASCII DNS name"),
    ],
)
def test_bad_arguments_are_refused_with_the_argument_named(
    hostnames: list[str], days: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        issue_self_signed_server(hostnames, days)


# --- real TLS handshakes --------------------------------------------------------------------


def _server_context(tmp_path: Path, cert_pem: str, key_pem: str) -> ssl.SSLContext:
    (tmp_path / "cert.pem").write_text(cert_pem)
    (tmp_path / "key.pem").write_text(key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return ctx


def _handshake(server_ctx: ssl.SSLContext, cert_pem: str, server_hostname: str) -> None:
    """Run a full handshake between a client that trusts only ``cert_pem`` and the server."""
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the name
    client_ctx.load_verify_locations(cadata=cert_pem)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    pending = {"client": True, "server": True}
    for _ in range(10):
        for side, obj in (("client", client), ("server", server)):
            if pending[side]:
                try:
                    obj.do_handshake()
                    pending[side] = False
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if not any(pending.values()):
            return
    raise AssertionError(f"handshake did not finish: {pending}")


@pytest.mark.parametrize("server_hostname", ["shop.demo.local", "127.0.0.1"])
def test_openssl_client_pinning_the_certificate_accepts_it(
    tmp_path: Path, server_hostname: str
) -> None:
    cert_pem, key_pem = issue_self_signed_server(["shop.demo.local", "127.0.0.1"])

    _handshake(_server_context(tmp_path, cert_pem, key_pem), cert_pem, server_hostname)


def test_openssl_client_refuses_a_name_not_in_the_certificate(tmp_path: Path) -> None:
    cert_pem, key_pem = issue_self_signed_server(["shop.demo.local"])

    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _handshake(_server_context(tmp_path, cert_pem, key_pem), cert_pem, "other.demo.local")
