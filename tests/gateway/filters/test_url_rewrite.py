"""URLRewrite: hostname and path rewriting, ReplacePrefixMatch per the Gateway API table."""

from __future__ import annotations

import pytest

from gateway.codec.messages import RequestHead
from gateway.config.snapshot import PathModifier, URLRewriteFilter
from gateway.filters.base import RequestContext
from gateway.filters.url_rewrite import URLRewrite, rewrite_path


@pytest.mark.parametrize(
    ("path", "prefix", "replacement", "expected"),
    [
        # The table of the Gateway API HTTPPathModifier documentation, row by row.
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
        # HTTPRouteRewritePath conformance.
        ("/prefix/one/two", "/prefix/one", "/one", "/one/two"),
        ("/strip-prefix/three", "/strip-prefix", "/", "/three"),
        ("/strip-prefix", "/strip-prefix", "/", "/"),
        (
            "/prefix/rewrite-path-and-modify-headers/one",
            "/prefix/rewrite-path-and-modify-headers",
            "/prefix",
            "/prefix/one",
        ),
        # The root prefix.
        ("/a/b", "/", "/xyz", "/xyz/a/b"),
        # The query string is kept.
        ("/foo/bar?x=1&y=2", "/foo", "/xyz", "/xyz/bar?x=1&y=2"),
        ("/foo?x=1", "/foo", "/", "/?x=1"),
    ],
)
def test_replace_prefix_match(path: str, prefix: str, replacement: str, expected: str) -> None:
    modifier = PathModifier(type="ReplacePrefixMatch", value=replacement)
    assert rewrite_path(modifier, path, prefix) == expected


@pytest.mark.parametrize(
    ("path", "matched_prefix", "expected"),
    [
        ("/full/one/two", "/full/one", "/one"),
        ("/full/one/two?a=b", "/full/one", "/one?a=b"),
        ("/x", None, "/one"),
    ],
)
def test_replace_full_path(path: str, matched_prefix: str | None, expected: str) -> None:
    assert (
        rewrite_path(PathModifier(type="ReplaceFullPath", value="/one"), path, matched_prefix)
        == expected
    )


def test_replace_prefix_without_a_prefix_match_leaves_the_path() -> None:
    modifier = PathModifier(type="ReplacePrefixMatch", value="/xyz")
    assert rewrite_path(modifier, "/foo/bar", None) == "/foo/bar"
    assert rewrite_path(modifier, "/other", "/foo") == "/other"


def request(
    path: str,
    authority: str = "gw.example",
    headers: list[tuple[bytes, bytes]] | None = None,
    matched_prefix: str | None = None,
) -> RequestContext:
    head = RequestHead("GET", path, authority, headers if headers is not None else [])
    return RequestContext(request=head, matched_prefix=matched_prefix)


def test_filter_rewrites_host_and_path() -> None:
    f = URLRewrite(
        URLRewriteFilter(
            hostname="one.example.org",
            path=PathModifier(type="ReplacePrefixMatch", value="/one"),
        )
    )
    c = request(
        "/prefix/one/two?k=v", headers=[(b"host", b"gw.example")], matched_prefix="/prefix/one"
    )
    assert f.on_request(c) is None
    assert c.request.path == "/one/two?k=v"
    assert c.request.authority == "one.example.org"
    assert c.request.headers == [(b"host", b"one.example.org")]


def test_filter_hostname_only_keeps_the_path() -> None:
    f = URLRewrite(URLRewriteFilter(hostname="elsewhere.example.org"))
    c = request("/rewrite-host?x=1")
    f.on_request(c)
    assert (c.request.authority, c.request.path) == ("elsewhere.example.org", "/rewrite-host?x=1")


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match=r"urlRewrite\.hostname"):
        URLRewrite(URLRewriteFilter(hostname="a\r\nb"))
