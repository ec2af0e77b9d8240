"""Issuance: roots, intermediates and workload leaves follow the X.509-SVID rules exactly.

Each test parses what the CA produced and asserts the extension it names; the last ones run a
real mutual-TLS handshake (OpenSSL through ``ssl``) with the issued chain.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki.authority import BACKDATE, MAX_LEAF_TTL, Authority, create_root
from pki.csr import csr_to_pem, load_csr, make_csr, requested_spiffe_id
from pki.errors import CsrError, IssuanceError
from pki.keys import KeyType, generate_key
from pki.spiffe import parse_spiffe_id

NOW = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
TD = "mesh.example"
WEB = parse_spiffe_id("spiffe://mesh.example/ns/shop/sa/web")


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension:
    return cert.extensions.get_extension_for_class(kind)


@pytest.fixture(scope="module")
def root() -> Authority:
    return create_root(generate_key(), TD, now=NOW)


@pytest.fixture(scope="module")
def intermediate(root: Authority) -> Authority:
    key = generate_key()
    cert = root.issue_intermediate(key.public_key(), "east", now=NOW)
    return Authority.load(cert, key, root.full_chain)


# --- signing certificates --------------------------------------------------------------------


@pytest.mark.parametrize(("which", "path_length"), [("root", 1), ("intermediate", 0)])
def test_ca_certificates_are_signing_certificates(
    root: Authority, intermediate: Authority, which: str, path_length: int
) -> None:
    cert = (root if which == "root" else intermediate).cert

    basic = _ext(cert, x509.BasicConstraints)
    assert basic.critical and basic.value.ca is True
    assert basic.value.path_length == path_length
    usage = _ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TD}"]
    assert _ext(cert, x509.SubjectKeyIdentifier).value.digest
    assert _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier


def test_root_is_self_signed_and_intermediate_chains_to_it(
    root: Authority, intermediate: Authority
) -> None:
    root.cert.verify_directly_issued_by(root.cert)
    intermediate.cert.verify_directly_issued_by(root.cert)
    aki = _ext(intermediate.cert, x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == _ext(root.cert, x509.SubjectKeyIdentifier).value.digest
    assert intermediate.full_chain == (intermediate.cert, root.cert)
    assert intermediate.trust_domain == TD


def test_intermediate_does_not_outlive_the_root(root: Authority) -> None:
    key = generate_key()
    cert = root.issue_intermediate(
        key.public_key(), "west", ttl=datetime.timedelta(days=100 * 365), now=NOW
    )

    assert cert.not_valid_after_utc == root.cert.not_valid_after_utc


@pytest.mark.parametrize("cluster", ["", "East", "a_b", "a" * 64, "-east"])
def test_bad_cluster_names_are_refused(root: Authority, cluster: str) -> None:
    with pytest.raises(IssuanceError, match="DNS label"):
        root.issue_intermediate(generate_key().public_key(), cluster, now=NOW)


def test_only_the_root_issues_intermediates(intermediate: Authority) -> None:
    with pytest.raises(IssuanceError, match="root only"):
        intermediate.issue_intermediate(generate_key().public_key(), "x", now=NOW)


def test_load_refuses_a_key_that_does_not_match(root: Authority) -> None:
    with pytest.raises(IssuanceError, match="does not match"):
        Authority.load(root.cert, generate_key())


def test_load_refuses_a_broken_chain(intermediate: Authority) -> None:
    other_root = create_root(generate_key(), TD, now=NOW)

    with pytest.raises(IssuanceError, match="not signed by"):
        Authority.load(intermediate.cert, intermediate.key, (other_root.cert,))


# --- workload leaves -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def leaf(intermediate: Authority) -> x509.Certificate:
    return intermediate.sign_leaf(generate_key().public_key(), WEB, now=NOW)


def test_leaf_has_exactly_one_uri_san_in_a_critical_extension(leaf: x509.Certificate) -> None:
    san = _ext(leaf, x509.SubjectAlternativeName)

    assert list(san.value) == [x509.UniformResourceIdentifier(str(WEB))]
    assert len(leaf.subject) == 0
    assert san.critical  # required with an empty subject


def test_leaf_basic_constraints_ca_false_critical(leaf: x509.Certificate) -> None:
    basic = _ext(leaf, x509.BasicConstraints)

    assert basic.critical
    assert basic.value.ca is False


def test_ec_leaf_key_usage_is_digital_signature_only_and_critical(leaf: x509.Certificate) -> None:
    usage = _ext(leaf, x509.KeyUsage)

    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    assert not usage.value.crl_sign


def test_rsa_leaf_key_usage_adds_key_encipherment(intermediate: Authority) -> None:
    cert = intermediate.sign_leaf(generate_key(KeyType.RSA_2048).public_key(), WEB, now=NOW)
    usage = _ext(cert, x509.KeyUsage).value

    assert usage.digital_signature and usage.key_encipherment
    assert not usage.key_cert_sign and not usage.crl_sign


def test_leaf_extended_key_usage_is_server_and_client_auth(leaf: x509.Certificate) -> None:
    eku = _ext(leaf, x509.ExtendedKeyUsage).value

    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_leaf_key_identifiers(leaf: x509.Certificate, intermediate: Authority) -> None:
    ski = _ext(leaf, x509.SubjectKeyIdentifier).value
    aki = _ext(leaf, x509.AuthorityKeyIdentifier).value

    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    assert aki.key_identifier == _ext(intermediate.cert, x509.SubjectKeyIdentifier).value.digest
    leaf.verify_directly_issued_by(intermediate.cert)


def test_serials_are_random_positive_128_bit(intermediate: Authority) -> None:
    serials = {
        intermediate.sign_leaf(generate_key().public_key(), WEB, now=NOW).serial_number
        for _ in range(20)
    }

    assert len(serials) == 20
    assert all(0 < serial < 2**128 for serial in serials)
    assert max(serials).bit_length() > 120  # random, not a counter


def test_leaf_validity_is_backdated_and_lasts_the_ttl(intermediate: Authority) -> None:
    ttl = datetime.timedelta(hours=6)
    cert = intermediate.sign_leaf(generate_key().public_key(), WEB, ttl=ttl, now=NOW)

    assert cert.not_valid_before_utc == NOW - BACKDATE
    assert cert.not_valid_after_utc == NOW + ttl


def test_default_leaf_lifetime_is_24h(leaf: x509.Certificate) -> None:
    assert leaf.not_valid_after_utc - NOW == datetime.timedelta(hours=24)


@pytest.mark.parametrize(
    ("ttl", "rule"),
    [
        (MAX_LEAF_TTL + datetime.timedelta(seconds=1), "ttl-too-long"),
        (datetime.timedelta(0), "ttl"),
        (datetime.timedelta(seconds=-5), "ttl"),
    ],
)
def test_lifetime_out_of_bounds_is_refused(
    intermediate: Authority, ttl: datetime.timedelta, rule: str
) -> None:
    with pytest.raises(IssuanceError) as caught:
        intermediate.sign_leaf(generate_key().public_key(), WEB, ttl=ttl, now=NOW)

    assert caught.value.rule == rule


def test_configured_maximum_lifetime_applies(intermediate: Authority) -> None:
    with pytest.raises(IssuanceError, match="above the maximum 1h"):
        intermediate.sign_leaf(
            generate_key().public_key(),
            WEB,
            ttl=datetime.timedelta(hours=2),
            max_ttl=datetime.timedelta(hours=1),
            now=NOW,
        )


def test_leaf_is_cut_to_the_issuers_end(intermediate: Authority) -> None:
    near_end = intermediate.cert.not_valid_after_utc - datetime.timedelta(hours=1)

    cert = intermediate.sign_leaf(generate_key().public_key(), WEB, now=near_end)

    assert cert.not_valid_after_utc == intermediate.cert.not_valid_after_utc


def test_expired_ca_refuses_to_sign(intermediate: Authority) -> None:
    later = intermediate.cert.not_valid_after_utc + datetime.timedelta(seconds=1)

    with pytest.raises(IssuanceError, match="expired"):
        intermediate.sign_leaf(generate_key().public_key(), WEB, now=later)


def test_foreign_trust_domain_is_refused(intermediate: Authority) -> None:
    with pytest.raises(IssuanceError, match="not in this CA's trust domain"):
        intermediate.sign_leaf(
            generate_key().public_key(), parse_spiffe_id("spiffe://other.example/a"), now=NOW
        )


def test_trust_domain_id_is_not_a_workload(intermediate: Authority) -> None:
    with pytest.raises(IssuanceError, match="not a workload"):
        intermediate.sign_leaf(
            generate_key().public_key(), parse_spiffe_id(f"spiffe://{TD}"), now=NOW
        )


def test_dns_sans_may_accompany_the_spiffe_id(intermediate: Authority) -> None:
    cert = intermediate.sign_leaf(
        generate_key().public_key(), WEB, dns_names=("Web.Shop.svc",), now=NOW
    )
    san = _ext(cert, x509.SubjectAlternativeName).value

    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [str(WEB)]
    assert san.get_values_for_type(x509.DNSName) == ["web.shop.svc"]


def test_unsupported_public_key_is_refused(intermediate: Authority) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()

    with pytest.raises(IssuanceError, match="P-256"):
        intermediate.sign_leaf(p384, WEB, now=NOW)


# --- CSRs ------------------------------------------------------------------------------------


def test_csr_round_trip_signs_the_requested_id(intermediate: Authority) -> None:
    key = generate_key()
    csr = load_csr(csr_to_pem(make_csr(key, WEB)))

    cert, spiffe_id = intermediate.sign_csr(csr, now=NOW)

    assert spiffe_id == WEB
    assert cert.public_key() == key.public_key()
    assert _ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    ) == [str(WEB)]


def _csr(names: list[x509.GeneralName] | None, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
         ) -> x509.CertificateSigningRequest:  # fmt: skip
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=True)
    return builder.sign(key, hashes.SHA256())


_URI = x509.UniformResourceIdentifier


@pytest.mark.parametrize(
    ("names", "rule"),
    [
        (None, "csr-no-uri-san"),
        ([x509.DNSName("web.example")], "csr-uri-sans"),
        ([_URI(str(WEB)), _URI("spiffe://mesh.example/b")], "csr-uri-sans"),
        ([_URI(str(WEB)), x509.DNSName("web.example")], "csr-extra-sans"),
        ([_URI("spiffe://mesh.example/a/../b")], "csr-spiffe-id"),
        ([_URI("https://mesh.example/a")], "csr-spiffe-id"),
        ([_URI("spiffe://mesh.example")], "csr-spiffe-id"),
    ],
)
def test_bad_csr_requests_are_refused(names: list[x509.GeneralName] | None, rule: str) -> None:
    with pytest.raises(CsrError) as caught:
        requested_spiffe_id(_csr(names, generate_key()))

    assert caught.value.rule == rule


def test_csr_with_a_bad_signature_is_refused() -> None:
    der = bytearray(make_csr(generate_key(), WEB).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature
    csr = x509.load_der_x509_csr(bytes(der))

    with pytest.raises(CsrError, match="signature"):
        requested_spiffe_id(csr)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----",
    ],
)
def test_malformed_csr_pem_is_refused(data: bytes) -> None:
    with pytest.raises(CsrError) as caught:
        load_csr(data)

    assert caught.value.rule == "pem"


# --- OpenSSL accepts what we issue -----------------------------------------------------------


def _write_identity(tmp_path: Path, name: str, intermediate: Authority) -> tuple[Path, Path]:
    key = generate_key()
    cert = intermediate.sign_leaf(
        key.public_key(), parse_spiffe_id(f"spiffe://{TD}/ns/shop/sa/{name}")
    )
    chain = tmp_path / f"{name}-chain.pem"
    chain.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, intermediate.cert))
    )
    key_path = tmp_path / f"{name}-key.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return chain, key_path


def test_openssl_mutual_tls_accepts_issued_svids(tmp_path: Path) -> None:
    live_root = create_root(generate_key(), TD)  # the module's root starts in 2030
    key = generate_key()
    inter = Authority.load(
        live_root.issue_intermediate(key.public_key(), "east"), key, live_root.full_chain
    )
    bundle_pem = live_root.cert.public_bytes(serialization.Encoding.PEM).decode()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*_write_identity(tmp_path, "server", inter))
    server_ctx.load_verify_locations(cadata=bundle_pem)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False  # SVIDs are checked by SPIFFE ID, not host name
    client_ctx.load_cert_chain(*_write_identity(tmp_path, "client", inter))
    client_ctx.load_verify_locations(cadata=bundle_pem)

    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for side, obj in (("client", client), ("server", server)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    assert all(done.values())
    peer = x509.load_der_x509_certificate(server.getpeercert(binary_form=True) or b"")
    assert _ext(peer, x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    ) == [f"spiffe://{TD}/ns/shop/sa/client"]
