"""The X.509-SVID verifier, table-driven: each case breaks one rule and expects it named.

Certificates that our CA would never issue are built by hand with ``cryptography``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki.authority import Authority, create_root
from pki.bundle import TrustBundle
from pki.errors import (
    ChainError,
    SigningCertRuleError,
    SvidRuleError,
    TrustDomainError,
    ValidityError,
    VerificationError,
)
from pki.keys import PrivateKey, generate_key
from pki.spiffe import parse_spiffe_id
from pki.verify import SvidVerifier, verify_svid

NOW = datetime.datetime(2031, 6, 1, 12, 0, 0, tzinfo=datetime.UTC)
TD = "mesh.example"
WEB = "spiffe://mesh.example/ns/shop/sa/web"
HOUR = datetime.timedelta(hours=1)


@dataclass
class Pki:
    root: Authority
    inter: Authority


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = create_root(generate_key(), TD, now=NOW - datetime.timedelta(days=30))
    key = generate_key()
    cert = root.issue_intermediate(key.public_key(), "east", now=NOW - datetime.timedelta(days=1))
    return Pki(root, Authority.load(cert, key, root.full_chain))


def _usage(**bits: bool) -> x509.KeyUsage:
    names = [
        "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
        "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
    ]  # fmt: skip
    return x509.KeyUsage(**{name: bits.get(name, False) for name in names})


@dataclass
class Spec:
    """A hand-made certificate; the defaults give a valid X.509-SVID leaf."""

    uris: list[str] = field(default_factory=lambda: [WEB])
    dns: list[str] = field(default_factory=list)
    subject: x509.Name = field(default_factory=lambda: x509.Name([]))
    san_critical: bool = True
    ca: bool | None = False
    path_length: int | None = None
    key_usage: x509.KeyUsage | None = field(default_factory=lambda: _usage(digital_signature=True))
    key_usage_critical: bool = True
    eku: list[x509.ObjectIdentifier] | None = field(
        default_factory=lambda: [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    not_before: datetime.datetime = NOW - HOUR
    not_after: datetime.datetime = NOW + HOUR
    unknown_critical: bool = False


def craft(
    spec: Spec, issuer: x509.Certificate, issuer_key: PrivateKey, key: PrivateKey | None = None
) -> tuple[x509.Certificate, PrivateKey]:
    key = key or generate_key()
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in spec.uris]
    names += [x509.DNSName(d) for d in spec.dns]
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject)
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), spec.san_critical)
    if spec.ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=spec.ca, path_length=spec.path_length), critical=True
        )
    if spec.key_usage is not None:
        builder = builder.add_extension(spec.key_usage, critical=spec.key_usage_critical)
    if spec.eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(spec.eku), critical=False)
    if spec.unknown_critical:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"),
            critical=True,
        )
    return builder.sign(issuer_key, hashes.SHA256()), key


def _leaf(pki: Pki, **changes: object) -> list[x509.Certificate]:
    cert, _ = craft(Spec(**changes), pki.inter.cert, pki.inter.key)  # type: ignore[arg-type]
    return [cert, pki.inter.cert]


def _cn(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


CA_USAGE = _usage(key_cert_sign=True, crl_sign=True)

# name -> (chain builder, error class, rule)
Case = tuple[Callable[[Pki], list[x509.Certificate]], type[VerificationError], str]
REFUSED: dict[str, Case] = {
    "expired": (lambda p: _leaf(p, not_after=NOW - HOUR, not_before=NOW - 2 * HOUR),
                ValidityError, "expired"),
    "not yet valid": (lambda p: _leaf(p, not_before=NOW + HOUR, not_after=NOW + 2 * HOUR),
                      ValidityError, "not-yet-valid"),
    "two URI SANs": (lambda p: _leaf(p, uris=[WEB, "spiffe://mesh.example/ns/shop/sa/db"]),
                     SvidRuleError, "leaf-uri-sans"),
    "no URI SAN": (lambda p: _leaf(p, uris=[], dns=["web.example"]),
                   SvidRuleError, "leaf-no-uri-san"),
    "no SAN at all": (lambda p: _leaf(p, uris=[]), SvidRuleError, "leaf-no-uri-san"),
    "CA certificate used as a leaf": (lambda p: [p.inter.cert], SvidRuleError, "leaf-ca"),
    "root used as a leaf": (lambda p: [p.root.cert], SvidRuleError, "leaf-ca"),
    "CA with a workload ID as a leaf": (
        lambda p: _leaf(p, ca=True, path_length=0, key_usage=CA_USAGE),
        SvidRuleError, "leaf-ca"),
    "URI SAN not a SPIFFE ID": (lambda p: _leaf(p, uris=["https://web.example/"]),
                                SvidRuleError, "leaf-spiffe-id"),
    "malformed SPIFFE ID": (lambda p: _leaf(p, uris=["spiffe://mesh.example/a/../b"]),
                            SvidRuleError, "leaf-spiffe-id"),
    "trust-domain ID on a leaf": (lambda p: _leaf(p, uris=["spiffe://mesh.example"]),
                                  SvidRuleError, "leaf-id-path"),
    "empty subject, SAN not critical": (lambda p: _leaf(p, san_critical=False),
                                        SvidRuleError, "leaf-san-critical"),
    "no keyUsage": (lambda p: _leaf(p, key_usage=None), SvidRuleError, "leaf-key-usage"),
    "keyUsage not critical": (lambda p: _leaf(p, key_usage_critical=False),
                              SvidRuleError, "leaf-key-usage-critical"),
    "keyCertSign on a leaf": (
        lambda p: _leaf(p, key_usage=_usage(digital_signature=True, key_cert_sign=True)),
        SvidRuleError, "leaf-key-cert-sign"),
    "cRLSign on a leaf": (
        lambda p: _leaf(p, key_usage=_usage(digital_signature=True, crl_sign=True)),
        SvidRuleError, "leaf-crl-sign"),
    "no digitalSignature": (lambda p: _leaf(p, key_usage=_usage(key_encipherment=True)),
                            SvidRuleError, "leaf-digital-signature"),
    "EKU serverAuth only": (lambda p: _leaf(p, eku=[ExtendedKeyUsageOID.SERVER_AUTH]),
                            SvidRuleError, "leaf-eku"),
    "EKU clientAuth only": (lambda p: _leaf(p, eku=[ExtendedKeyUsageOID.CLIENT_AUTH]),
                            SvidRuleError, "leaf-eku"),
    "unknown critical extension": (lambda p: _leaf(p, unknown_critical=True),
                                   ChainError, "chain"),
    "no certificate": (lambda p: [], ChainError, "no-certificate"),
    "missing intermediate": (lambda p: _leaf(p)[:1], ChainError, "chain"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_refused(pki: Pki, case: str) -> None:
    build, error, rule = REFUSED[case]

    with pytest.raises(error) as caught:
        verify_svid(build(pki), TrustBundle.of([pki.root.cert]), now=NOW)

    assert caught.value.rule == rule, str(caught.value)


def test_valid_svid_yields_its_spiffe_id_and_path(pki: Pki) -> None:
    leaf = pki.inter.sign_leaf(generate_key().public_key(), parse_spiffe_id(WEB), now=NOW)

    verified = SvidVerifier(TrustBundle.of([pki.root.cert]), trust_domain=TD).verify(
        [leaf, pki.inter.cert], now=NOW
    )

    assert verified.spiffe_id == parse_spiffe_id(WEB)
    assert verified.chain == (leaf, pki.inter.cert, pki.root.cert)


@pytest.mark.parametrize(
    "changes",
    [
        {"eku": None},  # extendedKeyUsage is optional
        {"dns": ["web.shop.svc"]},  # DNS SANs are allowed besides the URI
        {"subject": x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web")]),
         "san_critical": False},  # with a subject the SAN need not be critical
        {"key_usage": _usage(digital_signature=True, key_agreement=True)},
        {"ca": None},  # no basicConstraints means cA=false
    ],
)  # fmt: skip
def test_allowed_variants_are_accepted(pki: Pki, changes: dict[str, object]) -> None:
    assert str(verify_svid(_leaf(pki, **changes), TrustBundle.of([pki.root.cert]), now=NOW)) == WEB


def test_leaf_signed_by_the_root_directly(pki: Pki) -> None:
    leaf = pki.root.sign_leaf(generate_key().public_key(), parse_spiffe_id(WEB), now=NOW)

    assert str(verify_svid([leaf], TrustBundle.of([pki.root.cert]), now=NOW)) == WEB


def test_wrong_root(pki: Pki) -> None:
    other = create_root(generate_key(), TD, now=NOW - HOUR)

    with pytest.raises(ChainError, match="no valid path"):
        verify_svid(_leaf(pki), TrustBundle.of([other.cert]), now=NOW)


def test_wrong_trust_domain_when_one_is_expected(pki: Pki) -> None:
    chain = _leaf(pki, uris=["spiffe://other.example/ns/shop/sa/web"])
    bundle = TrustBundle.of([pki.root.cert])

    with pytest.raises(TrustDomainError, match=r"not in trust domain mesh\.example"):
        verify_svid(chain, bundle, trust_domain=TD, now=NOW)
    # Without an expected trust domain the chain alone decides.
    assert str(verify_svid(chain, bundle, now=NOW)).startswith("spiffe://other.example/")


def test_chain_with_a_broken_link(pki: Pki) -> None:
    impostor = generate_key()  # signs as if it were the intermediate
    leaf, _ = craft(Spec(), pki.inter.cert, impostor)

    with pytest.raises(ChainError, match="no valid path"):
        verify_svid([leaf, pki.inter.cert], TrustBundle.of([pki.root.cert]), now=NOW)


def test_expired_intermediate(pki: Pki) -> None:
    spec = Spec(uris=[f"spiffe://{TD}"], ca=True, path_length=0, key_usage=CA_USAGE, eku=None,
                subject=_cn("old"),
                not_before=NOW - 10 * HOUR, not_after=NOW - HOUR)  # fmt: skip
    inter, inter_key = craft(spec, pki.root.cert, pki.root.key)
    leaf, _ = craft(Spec(not_before=NOW - 5 * HOUR), inter, inter_key)

    with pytest.raises(ValidityError, match="CA certificate CN=old: expired"):
        verify_svid([leaf, inter], TrustBundle.of([pki.root.cert]), now=NOW)


def test_path_length_is_enforced(pki: Pki) -> None:
    sub_spec = Spec(
        uris=[f"spiffe://{TD}"], ca=True, key_usage=CA_USAGE, eku=None, subject=_cn("sub")
    )
    sub, sub_key = craft(sub_spec, pki.inter.cert, pki.inter.key)  # under a pathLen=0 CA
    leaf, _ = craft(Spec(), sub, sub_key)

    with pytest.raises(ChainError):
        verify_svid([leaf, sub, pki.inter.cert], TrustBundle.of([pki.root.cert]), now=NOW)


def test_signing_certificate_with_a_path_in_its_spiffe_id(pki: Pki) -> None:
    spec = Spec(uris=[f"spiffe://{TD}/ca/east"], ca=True, path_length=0, key_usage=CA_USAGE,
                eku=None, subject=_cn("pathy"))  # fmt: skip
    inter, inter_key = craft(spec, pki.root.cert, pki.root.key)
    leaf, _ = craft(Spec(), inter, inter_key)

    with pytest.raises(SigningCertRuleError) as caught:
        verify_svid([leaf, inter], TrustBundle.of([pki.root.cert]), now=NOW)

    assert caught.value.rule == "signing-id-path"


def test_empty_bundle_means_revoked(pki: Pki) -> None:
    with pytest.raises(ChainError) as caught:
        verify_svid(_leaf(pki), TrustBundle(()), now=NOW)

    assert caught.value.rule == "bundle-empty"


def test_extra_unrelated_intermediates_are_ignored(pki: Pki) -> None:
    other = create_root(generate_key(), TD, now=NOW - HOUR)

    chain = [*_leaf(pki), other.cert]

    assert str(verify_svid(chain, TrustBundle.of([pki.root.cert]), now=NOW)) == WEB
