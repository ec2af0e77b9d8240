"""Request and response header modifiers (Gateway API HTTPHeaderFilter)."""

from __future__ import annotations

import pytest

from gateway.codec.messages import RequestHead, ResponseHead
from gateway.config.snapshot import (
    HeaderModifier,
    RequestHeaderModifierFilter,
    ResponseHeaderModifierFilter,
)
from gateway.filters.base import RequestContext
from gateway.filters.header_mutation import HeaderMutation
from gateway.filters.request_header_modifier import RequestHeaderModifier
from gateway.filters.response_header_modifier import ResponseHeaderModifier

H = list[tuple[bytes, bytes]]


def ctx(headers: H, authority: str = "gw.example") -> RequestContext:
    return RequestContext(request=RequestHead("GET", "/", authority, headers))


@pytest.mark.parametrize(
    ("modifier", "before", "after"),
    [
        # The examples of the Gateway API HTTPHeaderFilter documentation.
        (
            HeaderModifier(set=(("my-header", "bar"),)),
            [(b"my-header", b"foo")],
            [(b"my-header", b"bar")],
        ),
        (
            HeaderModifier(add=(("my-header", "bar"),)),
            [(b"my-header", b"foo")],
            [(b"my-header", b"foo"), (b"my-header", b"bar")],
        ),
        (
            HeaderModifier(remove=("my-header1", "my-header3")),
            [(b"my-header1", b"foo"), (b"my-header2", b"bar"), (b"my-header3", b"baz")],
            [(b"my-header2", b"bar")],
        ),
        # set replaces every value; names are case-insensitive.
        (
            HeaderModifier(set=(("X-Multi", "one"),)),
            [(b"x-multi", b"a"), (b"other", b"o"), (b"x-multi", b"b")],
            [(b"other", b"o"), (b"x-multi", b"one")],
        ),
        (HeaderModifier(set=(("x-new", "v"),)), [], [(b"x-new", b"v")]),
        (HeaderModifier(remove=("absent",)), [(b"a", b"1")], [(b"a", b"1")]),
        # remove, then set, then add (Envoy's order).
        (HeaderModifier(add=(("x", "2"),), remove=("x",)), [(b"x", b"1")], [(b"x", b"2")]),
        (
            HeaderModifier(set=(("x", "1"),), add=(("x", "2"),)),
            [(b"x", b"0")],
            [(b"x", b"1"), (b"x", b"2")],
        ),
        (HeaderModifier(), [(b"a", b"1")], [(b"a", b"1")]),
    ],
)
def test_header_mutation(modifier: HeaderModifier, before: H, after: H) -> None:
    mutation = HeaderMutation(modifier)
    mutation.apply(before)
    assert before == after


def test_conformance_rewrite_path_and_modify_headers() -> None:
    # HTTPRouteRewritePath, "/full/rewrite-path-and-modify-headers/test".
    f = RequestHeaderModifier(
        RequestHeaderModifierFilter(
            modifier=HeaderModifier(
                set=(("X-Header-Set", "set-overwrites-values"),),
                add=(("X-Header-Add", "header-val-1"), ("X-Header-Add-Append", "header-val-2")),
                remove=("x-header-remove",),
            )
        )
    )
    c = ctx(
        [
            (b"x-header-remove", b"remove-val"),
            (b"x-header-add-append", b"append-val-1"),
            (b"x-header-set", b"set-val"),
        ]
    )
    assert f.on_request(c) is None
    got: dict[bytes, list[bytes]] = {}
    for k, v in c.request.headers:
        got.setdefault(k, []).append(v)
    assert {k: b",".join(v) for k, v in got.items()} == {
        b"x-header-add": b"header-val-1",
        b"x-header-add-append": b"append-val-1,header-val-2",
        b"x-header-set": b"set-overwrites-values",
    }


def test_request_modifier_sets_the_authority_not_a_second_host() -> None:
    f = RequestHeaderModifier(
        RequestHeaderModifierFilter(
            modifier=HeaderModifier(set=(("Host", "backend.internal"),), remove=("host",))
        )
    )
    c = ctx([(b"host", b"gw.example"), (b"accept", b"*/*")])
    f.on_request(c)
    assert c.request.authority == "backend.internal"
    assert c.request.headers == [(b"host", b"backend.internal"), (b"accept", b"*/*")]
    h2 = ctx([(b"accept", b"*/*")])  # HTTP/2: the authority is not a header
    f.on_request(h2)
    assert h2.request.authority == "backend.internal"
    assert h2.request.headers == [(b"accept", b"*/*")]


def test_request_modifier_leaves_the_response_alone() -> None:
    f = RequestHeaderModifier(
        RequestHeaderModifierFilter(modifier=HeaderModifier(set=(("x", "1"),)))
    )
    response = ResponseHead(200, [(b"x", b"0")])
    f.on_response(ctx([]), response)
    assert response.headers == [(b"x", b"0")]


def test_response_modifier() -> None:
    f = ResponseHeaderModifier(
        ResponseHeaderModifierFilter(
            modifier=HeaderModifier(
                set=(("X-Header-Set", "set-overwrites-values"),),
                add=(("set-cookie", "b=2"),),
                remove=("server",),
            )
        )
    )
    response = ResponseHead(
        200, [(b"server", b"upstream"), (b"set-cookie", b"a=1"), (b"x-header-set", b"old")]
    )
    c = ctx([(b"x-header-set", b"request-side")])
    assert f.on_request(c) is None
    f.on_response(c, response)
    assert response.headers == [
        (b"set-cookie", b"a=1"),
        (b"x-header-set", b"set-overwrites-values"),
        (b"set-cookie", b"b=2"),  # separate field lines, as Set-Cookie needs
    ]
    assert c.request.headers == [(b"x-header-set", b"request-side")]


@pytest.mark.parametrize(
    ("modifier", "field"),
    [
        (HeaderModifier(set=(("x", "a\r\nInjected: 1"),)), r"set\[0\]\.value"),
        (HeaderModifier(add=(("x\n", "1"),)), r"add\[0\]\.name"),
        (HeaderModifier(add=((":path", "/"),)), r"add\[0\]\.name"),
        (HeaderModifier(set=(("", "1"),)), r"set\[0\]\.name"),
        (HeaderModifier(remove=("bad name",)), r"remove\[0\]"),
    ],
)
def test_invalid_configuration_is_refused(modifier: HeaderModifier, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        HeaderMutation(modifier)
