"""SPIFFE ID parsing: every valid form and every invalid form of identity.md, "SPIFFE ID"."""

from __future__ import annotations

import pytest

from pki.errors import SpiffeIdError
from pki.spiffe import (
    SpiffeId,
    parse_spiffe_id,
    parse_trust_domain,
    trust_domain_id,
    workload_id,
    workload_parts,
)


@pytest.mark.parametrize(
    ("text", "trust_domain", "path"),
    [
        ("spiffe://example.org", "example.org", ""),
        ("spiffe://example.org/ns/default/sa/web", "example.org", "/ns/default/sa/web"),
        ("spiffe://td-1_x.y/a", "td-1_x.y", "/a"),
        ("spiffe://example.org/Path.With-All_Allowed09", "example.org", "/Path.With-All_Allowed09"),
        ("spiffe://example.org/a/.../b", "example.org", "/a/.../b"),  # only '.' and '..' are out
        ("SPIFFE://Example.ORG/CaseKept", "example.org", "/CaseKept"),  # scheme, td fold
        ("Spiffe://EXAMPLE.org", "example.org", ""),
        ("spiffe://" + "a" * 255 + "/x", "a" * 255, "/x"),
    ],
)
def test_valid_ids_parse_with_scheme_and_trust_domain_lowercased(
    text: str, trust_domain: str, path: str
) -> None:
    spiffe_id = parse_spiffe_id(text)

    assert spiffe_id == SpiffeId(trust_domain, path)
    assert str(spiffe_id) == f"spiffe://{trust_domain}{path}"


def test_ids_up_to_2048_bytes_are_supported() -> None:
    prefix = "spiffe://example.org"
    segments = "/" + "/".join(["abcdefg"] * 300)
    text = (prefix + segments)[:2048].rstrip("/")
    assert len(text) <= 2048 and len(text) > 2040

    assert str(parse_spiffe_id(text)) == text


def test_the_path_is_case_sensitive() -> None:
    assert parse_spiffe_id("spiffe://td/ns/A") != parse_spiffe_id("spiffe://td/ns/a")
    assert parse_spiffe_id("spiffe://TD/ns/a") == parse_spiffe_id("spiffe://td/ns/a")


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "empty"),
        ("http://example.org/a", "scheme"),
        ("spiffe:/example.org/a", "scheme"),
        ("example.org/a", "scheme"),
        ("spiffe://", "trust-domain"),
        ("spiffe:///path", "trust-domain"),
        ("spiffe://example.org/a?x=1", "query"),
        ("spiffe://example.org?x", "query"),
        ("spiffe://example.org/a#frag", "fragment"),
        ("spiffe://user@example.org/a", "userinfo"),
        ("spiffe://user:pw@example.org/a", "userinfo"),
        ("spiffe://example.org:8443/a", "port"),
        ("spiffe://exa mple.org/a", "trust-domain-chars"),
        ("spiffe://exa+mple.org/a", "trust-domain-chars"),
        ("spiffe://bücher.example/a", "trust-domain-chars"),
        ("spiffe://[::1]/a", "port"),
        ("spiffe://" + "a" * 256 + "/x", "trust-domain-too-long"),
        ("spiffe://example.org/", "trailing-slash"),
        ("spiffe://example.org/a/", "trailing-slash"),
        ("spiffe://example.org//a", "empty-segment"),
        ("spiffe://example.org/a//b", "empty-segment"),
        ("spiffe://example.org/./a", "dot-segment"),
        ("spiffe://example.org/a/..", "dot-segment"),
        ("spiffe://example.org/a/../b", "dot-segment"),
        ("spiffe://example.org/a%20b", "percent-encoding"),
        ("spiffe://example%2eorg/a", "percent-encoding"),
        ("spiffe://example.org/a b", "path-chars"),
        ("spiffe://example.org/a:b", "path-chars"),
        ("spiffe://example.org/é", "path-chars"),
        ("spiffe://example.org/" + "a" * 2048, "id-too-long"),
    ],
)
def test_invalid_ids_are_refused_naming_the_rule(text: str, rule: str) -> None:
    with pytest.raises(SpiffeIdError) as caught:
        parse_spiffe_id(text)

    assert caught.value.rule == rule
    assert "SPIFFE ID" in str(caught.value)


def test_workload_convention_round_trips() -> None:
    spiffe_id = workload_id("Mesh.Example", "shop", "cart")

    assert str(spiffe_id) == "spiffe://mesh.example/ns/shop/sa/cart"
    assert workload_parts(spiffe_id) == ("shop", "cart")
    assert workload_parts(parse_spiffe_id("spiffe://td/ns/shop")) is None
    assert workload_parts(parse_spiffe_id("spiffe://td/x/shop/sa/cart")) is None


def test_workload_id_refuses_a_bad_namespace() -> None:
    with pytest.raises(SpiffeIdError, match="empty segment"):
        workload_id("td", "", "cart")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Mesh.Example", "mesh.example"), ("spiffe://mesh.example", "mesh.example")],
)
def test_trust_domain_names(text: str, expected: str) -> None:
    assert parse_trust_domain(text) == expected
    assert str(trust_domain_id(text)) == f"spiffe://{expected}"


@pytest.mark.parametrize(
    "text", ["", "spiffe://td/path", "td:80", "a/b", "under score!", "a" * 256]
)
def test_bad_trust_domain_names_are_refused(text: str) -> None:
    with pytest.raises(SpiffeIdError):
        parse_trust_domain(text)


def test_membership_compares_trust_domains_case_insensitively() -> None:
    spiffe_id = parse_spiffe_id("spiffe://mesh.example/a")

    assert spiffe_id.member_of("MESH.example")
    assert not spiffe_id.member_of("other.example")
