"""RequestRedirect: Location per the Gateway API HTTPRequestRedirectFilter, status codes."""

from __future__ import annotations

import pytest

from gateway.codec.messages import RequestHead
from gateway.config.snapshot import PathModifier, RequestRedirectFilter
from gateway.filters.base import RequestContext
from gateway.filters.request_redirect import RequestRedirect


def redirect(
    config: RequestRedirectFilter,
    path: str = "/",
    *,
    authority: str = "10.0.0.1:80",
    scheme: str = "http",
    matched_prefix: str | None = "/",
) -> tuple[int, str]:
    ctx = RequestContext(
        request=RequestHead("GET", path, authority, [], scheme=scheme),
        matched_prefix=matched_prefix,
    )
    reply = RequestRedirect(config).on_request(ctx)
    assert reply is not None
    assert [k for k, _ in reply.headers] == [b"location"]
    return reply.status, reply.headers[0][1].decode()


def port_and_scheme(scheme: str | None, port: int | None) -> RequestRedirectFilter:
    return RequestRedirectFilter(scheme=scheme, port=port, hostname="example.org")


@pytest.mark.parametrize(
    ("authority", "request_scheme", "scheme", "port", "location"),
    [
        # HTTPRouteRedirectPortAndScheme: the listener on port 80.
        ("10.0.0.1:80", "http", None, None, "http://example.org/"),
        ("10.0.0.1:80", "http", None, 80, "http://example.org/"),
        ("10.0.0.1:80", "http", None, 8080, "http://example.org:8080/"),
        ("10.0.0.1:80", "http", "https", None, "https://example.org/"),
        ("10.0.0.1:80", "http", "https", 443, "https://example.org/"),
        ("10.0.0.1:80", "http", "https", 8443, "https://example.org:8443/"),
        # The listener on port 8080.
        ("10.0.0.1:8080", "http", None, None, "http://example.org:8080/"),
        ("10.0.0.1:8080", "http", None, 80, "http://example.org/"),
        ("10.0.0.1:8080", "http", "https", None, "https://example.org/"),
        # The HTTPS listener on 443, Host example.org.
        ("example.org", "https", None, None, "https://example.org/"),
        ("example.org", "https", None, 443, "https://example.org/"),
        ("example.org", "https", None, 8443, "https://example.org:8443/"),
        ("example.org", "https", "http", None, "http://example.org/"),
        ("example.org", "https", "http", 80, "http://example.org/"),
        ("example.org", "https", "http", 8080, "http://example.org:8080/"),
    ],
)
def test_conformance_port_and_scheme(
    authority: str, request_scheme: str, scheme: str | None, port: int | None, location: str
) -> None:
    status, got = redirect(
        port_and_scheme(scheme, port), authority=authority, scheme=request_scheme
    )
    assert (status, got) == (302, location)


@pytest.mark.parametrize(
    ("config", "path", "matched_prefix", "location"),
    [
        # HTTPRouteRedirectPath.
        (
            RequestRedirectFilter(
                path=PathModifier(type="ReplacePrefixMatch", value="/replacement-prefix")
            ),
            "/original-prefix/lemon",
            "/original-prefix",
            "http://gw.example/replacement-prefix/lemon",
        ),
        (
            RequestRedirectFilter(
                path=PathModifier(type="ReplaceFullPath", value="/full-path-replacement")
            ),
            "/full/path/original",
            "/full/path/original",
            "http://gw.example/full-path-replacement",
        ),
        (
            RequestRedirectFilter(
                hostname="example.org",
                path=PathModifier(type="ReplacePrefixMatch", value="/replacement-prefix"),
            ),
            "/path-and-host/x",
            "/path-and-host",
            "http://example.org/replacement-prefix/x",
        ),
        (
            RequestRedirectFilter(path=PathModifier(type="ReplacePrefixMatch", value="/")),
            "/strip/x?a=b",
            "/strip",
            "http://gw.example/x?a=b",
        ),
        # No path modifier: the path and query are kept.
        (RequestRedirectFilter(scheme="https"), "/a/b?c=d", "/", "https://gw.example/a/b?c=d"),
    ],
)
def test_redirect_paths(
    config: RequestRedirectFilter, path: str, matched_prefix: str, location: str
) -> None:
    assert redirect(config, path, authority="gw.example", matched_prefix=matched_prefix) == (
        302,
        location,
    )


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_status_codes(status: int) -> None:
    assert redirect(RequestRedirectFilter(hostname="example.org", status_code=status))[0] == status


@pytest.mark.parametrize(
    ("authority", "config", "location"),
    [
        ("[::1]:8080", RequestRedirectFilter(), "http://[::1]:8080/p"),
        ("[::1]:8080", RequestRedirectFilter(scheme="https"), "https://[::1]/p"),
        ("GW.Example:80", RequestRedirectFilter(), "http://gw.example/p"),
        ("gw.example", RequestRedirectFilter(port=9000), "http://gw.example:9000/p"),
        ("", RequestRedirectFilter(), "/p"),  # HTTP/1.0 without Host: a relative reference
    ],
)
def test_authority_edges(authority: str, config: RequestRedirectFilter, location: str) -> None:
    assert redirect(config, "/p", authority=authority)[1] == location


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (RequestRedirectFilter(status_code=200), "statusCode"),
        (RequestRedirectFilter(scheme="ftp"), "scheme"),
        (RequestRedirectFilter(port=70000), "port"),
        (RequestRedirectFilter(hostname="a\nb"), "hostname"),
    ],
)
def test_invalid_configuration_is_refused(config: RequestRedirectFilter, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RequestRedirect(config)
