"""Compiled RouteMatch conditions: path, method, headers, query; and prefix-matching properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config.snapshot import HeaderMatch, PathMatch, QueryMatch, RouteMatch
from gateway.routing.match import (
    CompiledMatch,
    PathMatcher,
    parse_query,
    prefix_matches,
    split_path_query,
)


@pytest.mark.parametrize(
    ("kind", "value", "path", "expected"),
    [
        # PathPrefix works on whole path elements (Gateway API HTTPPathMatch).
        ("PathPrefix", "/foo", "/foo", True),
        ("PathPrefix", "/foo", "/foo/", True),
        ("PathPrefix", "/foo", "/foo/bar", True),
        ("PathPrefix", "/foo", "/foobar", False),
        ("PathPrefix", "/foo", "/fo", False),
        ("PathPrefix", "/foo/", "/foo", True),  # a trailing slash is ignored
        ("PathPrefix", "/foo/", "/foo/bar", True),
        ("PathPrefix", "/foo/", "/foobar", False),
        ("PathPrefix", "/", "/", True),
        ("PathPrefix", "/", "/anything/at/all", True),
        ("PathPrefix", "/v2", "/v2/example", True),
        ("PathPrefix", "/v2", "/v20", False),
        ("Exact", "/foo", "/foo", True),
        ("Exact", "/foo", "/foo/", False),
        ("Exact", "/foo", "/foo/bar", False),
        ("Exact", "/", "/", True),
        # RegularExpression must match the whole path.
        ("RegularExpression", r"/foo/\d+", "/foo/123", True),
        ("RegularExpression", r"/foo/\d+", "/foo/123/x", False),
        ("RegularExpression", r"/foo/\d+", "/x/foo/123", False),
        ("RegularExpression", r".*/bar", "/foo/bar", True),
    ],
)
def test_path_matching(kind: str, value: str, path: str, expected: bool) -> None:
    matcher = PathMatcher(PathMatch(type=kind, value=value))  # type: ignore[arg-type]
    assert matcher.matches(path) is expected


def test_match_without_path_is_prefix_root() -> None:
    m = CompiledMatch(RouteMatch(method="GET"))
    assert m.path.kind == "PathPrefix"
    assert m.path.prefix == "/"
    assert m.path.test is None
    assert m.matches("/any/thing?x=1", "GET", [])
    assert not m.matches("/", "POST", [])


def test_matched_prefix_is_normalized() -> None:
    assert PathMatcher(PathMatch(value="/foo/")).prefix == "/foo"
    assert PathMatcher(PathMatch(value="/")).prefix == "/"
    assert PathMatcher(PathMatch(type="Exact", value="/foo")).prefix is None


def test_bad_regex_is_refused_with_the_field() -> None:
    with pytest.raises(ValueError, match=r"path\.value"):
        PathMatcher(PathMatch(type="RegularExpression", value="("))
    with pytest.raises(ValueError, match=r"headers\[x\]"):
        CompiledMatch(
            RouteMatch(headers=(HeaderMatch(name="x", value="(", type="RegularExpression"),))
        )
    with pytest.raises(ValueError, match=r"queryParams\[q\]"):
        CompiledMatch(
            RouteMatch(query=(QueryMatch(name="q", value="[", type="RegularExpression"),))
        )


@pytest.mark.parametrize(
    ("match", "headers", "expected"),
    [
        (HeaderMatch(name="version", value="one"), [(b"version", b"one")], True),
        (HeaderMatch(name="version", value="one"), [(b"version", b"One")], False),
        (HeaderMatch(name="version", value="one"), [(b"other", b"one")], False),
        (HeaderMatch(name="Version", value="one"), [(b"version", b"one")], True),
        # Repeated fields are joined with a comma.
        (HeaderMatch(name="x", value="a,b"), [(b"x", b"a"), (b"y", b"-"), (b"x", b"b")], True),
        (HeaderMatch(name="x", value="a"), [(b"x", b"a"), (b"x", b"b")], False),
        (HeaderMatch(name="x", value=r"v\d", type="RegularExpression"), [(b"x", b"v1")], True),
        (HeaderMatch(name="x", value=r"v\d", type="RegularExpression"), [(b"x", b"v12")], False),
        (HeaderMatch(name="x", value="", type="Exact"), [(b"x", b"")], True),
    ],
)
def test_header_matching(
    match: HeaderMatch, headers: list[tuple[bytes, bytes]], expected: bool
) -> None:
    assert CompiledMatch(RouteMatch(headers=(match,))).matches("/", "GET", headers) is expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        # From the Gateway API HTTPRouteQueryParamMatching conformance test.
        ("/?animal=whale", True),
        ("/?animal=whale&otherparam=irrelevant", True),
        ("/?otherparam=irrelevant&animal=whale", True),
        ("/?ANIMAL=whale", False),  # names are case-sensitive
        ("/?animal=whaledolphin", False),
        ("/?animal=Whale", False),
        ("/", False),
        ("/?animal=wh%61le", True),  # percent-decoded
        ("/?animal=whale&animal=dolphin", True),  # first value wins
        ("/?animal=dolphin&animal=whale", False),
    ],
)
def test_query_matching(target: str, expected: bool) -> None:
    m = CompiledMatch(RouteMatch(query=(QueryMatch(name="animal", value="whale"),)))
    assert m.matches(target, "GET", []) is expected


def test_query_regex() -> None:
    m = CompiledMatch(
        RouteMatch(query=(QueryMatch(name="id", value=r"[0-9]+", type="RegularExpression"),))
    )
    assert m.matches("/?id=42", "GET", [])
    assert not m.matches("/?id=42a", "GET", [])


def test_duplicate_names_count_once() -> None:
    m = CompiledMatch(
        RouteMatch(
            headers=(HeaderMatch(name="x", value="1"), HeaderMatch(name="X", value="2")),
            query=(QueryMatch(name="q", value="1"), QueryMatch(name="q", value="2")),
        )
    )
    assert len(m.headers) == 1 and len(m.query) == 1
    assert m.matches("/?q=1", "GET", [(b"x", b"1")])


def test_parse_query() -> None:
    assert parse_query("") == {}
    assert parse_query("a=1&b=&c&&a=2") == {"a": "1", "b": "", "c": ""}
    assert parse_query("k%20ey=v%2Fal+ue") == {"k ey": "v/al+ue"}


def test_split_path_query() -> None:
    assert split_path_query("/a/b?x=1&y") == ("/a/b", "x=1&y")
    assert split_path_query("/a/b") == ("/a/b", "")
    assert split_path_query("/a?") == ("/a", "")


def test_precedence_order() -> None:
    exact = CompiledMatch(RouteMatch(path=PathMatch(type="Exact", value="/a")))
    long_prefix = CompiledMatch(RouteMatch(path=PathMatch(value="/a/b/c")))
    short_prefix = CompiledMatch(RouteMatch(path=PathMatch(value="/a")))
    regex_same_len = CompiledMatch(RouteMatch(path=PathMatch(type="RegularExpression", value="/.")))
    with_method = CompiledMatch(RouteMatch(path=PathMatch(value="/"), method="GET"))
    with_headers = CompiledMatch(
        RouteMatch(headers=(HeaderMatch(name="a", value="1"), HeaderMatch(name="b", value="1")))
    )
    with_header = CompiledMatch(RouteMatch(headers=(HeaderMatch(name="a", value="1"),)))
    with_query = CompiledMatch(RouteMatch(query=(QueryMatch(name="a", value="1"),)))
    bare = CompiledMatch(RouteMatch())
    ordered = [
        exact,
        long_prefix,
        short_prefix,
        regex_same_len,
        with_method,
        with_headers,
        with_header,
        with_query,
        bare,
    ]
    assert sorted(ordered, key=CompiledMatch.precedence) == ordered
    assert bare.unconditional and not with_query.unconditional


# --- properties ------------------------------------------------------------------------

segment = st.text(alphabet="abc-.%", min_size=1, max_size=4)
segments = st.lists(segment, min_size=0, max_size=5)


@given(prefix=segments, path=segments, trailing_prefix=st.booleans(), trailing_path=st.booleans())
def test_prefix_matches_on_element_boundaries(
    prefix: list[str], path: list[str], trailing_prefix: bool, trailing_path: bool
) -> None:
    prefix_value = "/" + "/".join(prefix) + ("/" if trailing_prefix and prefix else "")
    request_path = "/" + "/".join(path) + ("/" if trailing_path and path else "")
    expected = path[: len(prefix)] == prefix
    matcher = PathMatcher(PathMatch(value=prefix_value))
    assert matcher.matches(request_path) is expected
    assert (
        CompiledMatch(RouteMatch(path=PathMatch(value=prefix_value))).matches(
            request_path + "?q=1", "GET", []
        )
        is expected
    )


@given(base=segments, extra=st.text(alphabet="abc", min_size=1, max_size=3))
def test_prefix_never_matches_a_longer_element(base: list[str], extra: str) -> None:
    prefix = "/" + "/".join([*base, "x"])
    assert not prefix_matches(prefix, prefix + extra)
    assert prefix_matches(prefix, prefix + "/" + extra)
