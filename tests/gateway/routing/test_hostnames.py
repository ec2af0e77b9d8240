"""Host matching: Gateway API hostname semantics, authorities, and the most-specific index."""

from __future__ import annotations

import pytest

from gateway.routing.hostnames import (
    HostIndex,
    host_from_authority,
    hostname_matches,
    intersect_hostnames,
    normalize_hostname,
    split_authority,
)


@pytest.mark.parametrize(
    ("authority", "host", "port"),
    [
        ("example.com", "example.com", None),
        ("Example.COM", "example.com", None),
        ("example.com:8080", "example.com", 8080),
        ("example.com.", "example.com", None),
        ("example.com.:80", "example.com", 80),
        ("[::1]", "[::1]", None),
        ("[::1]:8443", "[::1]", 8443),
        ("[2001:DB8::1]:80", "[2001:db8::1]", 80),
        ("::1", "::1", None),  # bare IPv6 is not host:port
        ("10.0.0.1:9000", "10.0.0.1", 9000),
        ("example.com:abc", "example.com", None),
        ("", "", None),
        ("[::1", "[::1", None),
    ],
)
def test_split_authority(authority: str, host: str, port: int | None) -> None:
    assert split_authority(authority) == (host, port)
    assert host_from_authority(authority) == host


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("example.com", "example.com", True),
        ("example.com", "foo.example.com", False),
        ("*.example.com", "foo.example.com", True),
        ("*.example.com", "foo.bar.example.com", True),  # one or more labels
        ("*.example.com", "example.com", False),
        ("*.example.com", "fooexample.com", False),
        ("*.example.com", ".example.com", False),
        ("*", "anything.at.all", True),
    ],
)
def test_hostname_matches(pattern: str, host: str, expected: bool) -> None:
    assert hostname_matches(pattern, host) is expected


def test_normalize_hostname() -> None:
    assert normalize_hostname(" Foo.Example.COM. ") == "foo.example.com"
    assert normalize_hostname("*.Example.com") == "*.example.com"


@pytest.mark.parametrize(
    ("listener", "route", "expected"),
    [
        (None, "foo.com", "foo.com"),
        ("foo.com", "foo.com", "foo.com"),
        ("foo.com", "bar.com", None),
        ("abc.foo.example.com", "*.example.com", "abc.foo.example.com"),
        ("*.example.com", "bar.com", None),
        ("*.example.com", "a.example.com", "a.example.com"),
        ("*.foo.example.com", "*.example.com", "*.foo.example.com"),
        ("*.example.com", "*.foo.example.com", "*.foo.example.com"),
        ("*.example.com", "*.example.net", None),
        ("*.example.com", "*.example.com", "*.example.com"),
    ],
)
def test_intersect_hostnames(listener: str | None, route: str, expected: str | None) -> None:
    assert intersect_hostnames(listener, route) == expected


def test_index_prefers_exact_then_longest_wildcard_then_any() -> None:
    index: HostIndex[str] = HostIndex()
    index.add("*.example.com", "wild")
    index.add("*.foo.example.com", "wild-foo")
    index.add("abc.foo.example.com", "exact")
    index.add(None, "any")
    assert index.lookup("abc.foo.example.com") == "exact"
    assert index.lookup("bar.foo.example.com") == "wild-foo"
    assert index.lookup("x.y.foo.example.com") == "wild-foo"
    assert index.lookup("bar.example.com") == "wild"
    assert index.lookup("foo.example.com") == "wild"  # *.foo.example.com needs a label more
    assert index.lookup("example.com") == "any"
    assert index.lookup("[::1]") == "any"
    assert len(index) == 4
    assert repr(index) == "<HostIndex [1 exact, 2 wildcard, 1 any]>"


def test_index_without_catch_all_misses() -> None:
    index: HostIndex[str] = HostIndex()
    index.add("a.com", "a")
    assert index.lookup("b.com") is None
    assert index.lookup("") is None
