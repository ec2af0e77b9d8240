"""Trust bundles: PEM and SPIFFE JWK-set encodings, merge, dedupe, and what may be a root."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki.authority import create_root
from pki.bundle import TrustBundle, read_bundle, write_bundle
from pki.errors import BundleError
from pki.keys import KeyType, generate_key
from pki.spiffe import parse_spiffe_id

TD = "mesh.example"
Roots = list[x509.Certificate]


@pytest.fixture(scope="module")
def roots() -> Roots:
    return [create_root(generate_key(), TD).cert for _ in range(3)]


def test_pem_round_trip_keeps_order(tmp_path: Path, roots: Roots) -> None:
    bundle = TrustBundle.of(roots)

    write_bundle(tmp_path / "bundle.pem", bundle)

    assert read_bundle(tmp_path / "bundle.pem").roots == tuple(roots)
    assert (tmp_path / "bundle.pem").read_bytes().count(b"BEGIN CERTIFICATE") == 3


def test_duplicates_are_dropped(roots: Roots) -> None:
    pem = TrustBundle.of(roots[:2]).to_pem() + TrustBundle.of(roots[:1]).to_pem()

    assert TrustBundle.from_pem(pem).roots == tuple(roots[:2])


def test_merge_adds_new_roots_after_the_existing_ones(roots: Roots) -> None:
    old = TrustBundle.of(roots[:2])
    new = TrustBundle.of([roots[2], roots[0]])

    merged = old.merge(new)

    assert merged.roots == (roots[0], roots[1], roots[2])
    assert merged.without(roots[0]).roots == (roots[1], roots[2])
    assert roots[2] in merged and roots[2] not in old


def test_a_leaf_cannot_be_a_trust_anchor() -> None:
    root = create_root(generate_key(), TD)
    leaf = root.sign_leaf(generate_key().public_key(), parse_spiffe_id(f"spiffe://{TD}/a"))

    with pytest.raises(BundleError, match="cA=true"):
        TrustBundle.of([root.cert, leaf])


@pytest.mark.parametrize("data", [b"", b"junk", b"-----BEGIN CERTIFICATE-----\nAA\n"])
def test_malformed_pem_is_refused(data: bytes) -> None:
    with pytest.raises(BundleError):
        TrustBundle.from_pem(data)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="cannot read"):
        read_bundle(tmp_path / "absent.pem")


def test_spiffe_bundle_format() -> None:
    ec_root = create_root(generate_key(), TD).cert
    rsa_root = create_root(generate_key(KeyType.RSA_2048), TD).cert

    document = json.loads(
        TrustBundle.of([ec_root, rsa_root]).to_spiffe_json(sequence=7, refresh_hint_s=300)
    )

    assert document["spiffe_sequence"] == 7
    assert document["spiffe_refresh_hint"] == 300
    ec_key, rsa_key = document["keys"]
    assert ec_key["kty"] == "EC" and ec_key["crv"] == "P-256" and {"x", "y"} <= ec_key.keys()
    assert rsa_key["kty"] == "RSA" and {"n", "e"} <= rsa_key.keys()
    for key, cert in ((ec_key, ec_root), (rsa_key, rsa_root)):
        assert key["use"] == "x509-svid"
        assert "kid" not in key
        assert key["x5c"] == [
            base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        ]
    assert TrustBundle.from_spiffe_json(json.dumps(document)).roots == (ec_root, rsa_root)


def test_spiffe_bundle_skips_other_uses_and_empty_means_revoked(roots: Roots) -> None:
    document = json.loads(TrustBundle.of(roots[:1]).to_spiffe_json())
    document["keys"].append({"kty": "EC", "use": "jwt-svid", "kid": "k1", "crv": "P-256"})

    assert TrustBundle.from_spiffe_json(json.dumps(document)).roots == (roots[0],)
    assert len(TrustBundle.from_spiffe_json('{"spiffe_sequence": 2, "keys": []}')) == 0


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (lambda key: key.update(kid="abc"), "bundle-kid"),
        (lambda key: key.update(x5c=[]), "bundle-x5c"),
        (lambda key: key.update(x5c=["!!notbase64"]), "bundle-x5c"),
        (lambda key: key.update(kty="RSA"), "bundle-kty"),
    ],
)
def test_malformed_spiffe_bundle_keys(
    roots: Roots, mutate: Callable[[dict[str, object]], None], rule: str
) -> None:
    document = json.loads(TrustBundle.of(roots[:1]).to_spiffe_json())
    mutate(document["keys"][0])

    with pytest.raises(BundleError) as caught:
        TrustBundle.from_spiffe_json(json.dumps(document))

    assert caught.value.rule == rule


@pytest.mark.parametrize("text", ["not json", "[]", '{"keys": 3}'])
def test_spiffe_bundle_that_is_not_a_jwk_set(text: str) -> None:
    with pytest.raises(BundleError):
        TrustBundle.from_spiffe_json(text)
