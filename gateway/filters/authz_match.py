"""Istio's matching primitives for AuthorizationPolicy values. Pure code, no I/O.

Used by ``gateway.filters.authz_rules`` to compile a policy's values, and by
``gateway.filters.authz_request`` to normalize what a request offers. The semantics are the
ones Istio generates for Envoy's RBAC filter:

* Strings: ``abc`` exact, ``abc*`` prefix, ``*abc`` suffix, ``*`` any non-empty value
  (for headers: the header is present). Hosts compare without regard to case; everything
  else is case-sensitive.
* Paths are compared after Istio's default (``BASE``) normalization of the request path
  (:func:`normalize_path`): the query is dropped; ``%2D %2E %30-%39 %41-%5A %5F %61-%7A
  %7E`` are decoded, other escapes upper-cased (``%2F`` stays encoded); ``\\`` becomes
  ``/``; ``.`` and ``..`` segments are resolved (RFC 3986). Slashes are not merged. The
  request forwarded upstream is not rewritten. A path value with ``{*}`` (one segment) or
  ``{**}`` (any rest of the path) is a template matched against whole segments.
* IP blocks are addresses or CIDR ranges; an IPv4-mapped IPv6 peer counts as IPv4.
* Principals are SPIFFE IDs without ``spiffe://`` (``cluster.local/ns/x/sa/y``); the
  namespace is the segment after ``ns``.
* Request principals are ``<iss>/<sub>``, split at the last ``/`` of the value, as Istio
  splits them: ``*`` needs both claims, ``*/sub`` any issuer, ``iss/*`` any subject,
  ``*suffix`` (no ``/``) a subject suffix, ``prefix*`` (no ``/``) an issuer prefix.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable

SPIFFE = "spiffe://"
_UNRESERVED_ESCAPES = frozenset(
    [0x2D, 0x2E, 0x5F, 0x7E, *range(0x30, 0x3A), *range(0x41, 0x5B), *range(0x61, 0x7B)]
)
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")

Test = Callable[[str], bool]


def string_test(pattern: str, *, ignore_case: bool = False) -> Test:
    """The test for one Istio string value (exact, ``prefix*``, ``*suffix`` or ``*``)."""
    if ignore_case:
        pattern = pattern.lower()
    if pattern == "*":
        return lambda v: v != ""
    if pattern.startswith("*"):
        suffix = pattern[1:]
        if ignore_case:
            return lambda v: v.lower().endswith(suffix)
        return lambda v: v.endswith(suffix)
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        if ignore_case:
            return lambda v: v.lower().startswith(prefix)
        return lambda v: v.startswith(prefix)
    if ignore_case:
        return lambda v: v.lower() == pattern
    return lambda v: v == pattern


def any_test(tests: Iterable[Test]) -> Test:
    """A test that holds when any of ``tests`` holds."""
    found = tuple(tests)
    if len(found) == 1:
        return found[0]
    return lambda v: any(t(v) for t in found)


def path_test(pattern: str) -> Test:
    """The test for one ``paths`` value against a normalized path."""
    if "{*}" in pattern or "{**}" in pattern:
        parts = []
        for segment in pattern.split("/"):
            if segment == "{*}":
                parts.append("[^/]+")
            elif segment == "{**}":
                parts.append(".*")
            else:
                parts.append(re.escape(segment))
        regex = re.compile("/".join(parts))
        return lambda v: regex.fullmatch(v) is not None
    return string_test(pattern)


def normalize_path(target: str) -> str:
    """The request target as Istio's ``BASE`` normalization leaves it, without the query."""
    path = target
    for mark in ("?", "#"):
        cut = path.find(mark)
        if cut >= 0:
            path = path[:cut]
    if "%" in path:
        path = _ESCAPE.sub(_unescape, path)
    if "\\" in path:
        path = path.replace("\\", "/")
    if "." in path:
        path = remove_dot_segments(path)
    return path or "/"


def _unescape(m: re.Match[str]) -> str:
    byte = int(m.group(1), 16)
    if byte in _UNRESERVED_ESCAPES:
        return chr(byte)
    return "%" + m.group(1).upper()


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, for an absolute path."""
    out: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    result = "/".join(out)
    if path.startswith("/") and not result.startswith("/"):
        result = "/" + result
    return result


def ip_test(block: str) -> Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address | None], bool]:
    """The test for one ``ipBlocks`` value: an address or a CIDR range."""
    network = ipaddress.ip_network(block, strict=False)
    return lambda addr: addr is not None and addr.version == network.version and addr in network


def parse_address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer's address (``[v6]`` and ``v4:port`` forms are not expected here), with
    IPv4-mapped IPv6 addresses as IPv4; None when it is not an IP address."""
    try:
        addr = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def principal_of(peer: str | None) -> str | None:
    """The Istio principal of a peer SPIFFE ID: the ID without ``spiffe://``."""
    if not peer:
        return None
    return peer[len(SPIFFE) :] if peer.startswith(SPIFFE) else peer


def namespace_of(principal: str | None) -> str | None:
    """The namespace in an Istio principal ``<td>/ns/<namespace>/sa/<sa>``."""
    if not principal:
        return None
    parts = principal.split("/")
    if len(parts) >= 3 and parts[1] == "ns" and parts[2]:
        return parts[2]
    return None


def request_principal_test(value: str) -> Callable[[str | None, str | None], bool]:
    """Istio's test of ``requestPrincipals``/``request.auth.principal`` against the token's
    ``iss`` and ``sub`` (both must be present for anything to match)."""
    slash = value.rfind("/")
    iss, sub = (value[:slash], value[slash + 1 :]) if slash >= 0 else (value, "")

    def non_empty(v: str) -> bool:
        return v != ""

    test_iss: Test
    test_sub: Test
    if value == "*":
        test_iss = test_sub = non_empty
    elif value.startswith("*"):
        if slash >= 0:
            test_iss = non_empty if iss == "*" else string_test(iss)
            test_sub = _exact(sub)
        else:
            test_iss, test_sub = non_empty, string_test(value)
    elif value.endswith("*"):
        if slash >= 0:
            test_iss = _exact(iss)
            test_sub = non_empty if sub == "*" else string_test(sub)
        else:
            test_iss, test_sub = string_test(value), non_empty
    else:
        test_iss, test_sub = _exact(iss), _exact(sub)

    def test(token_iss: str | None, token_sub: str | None) -> bool:
        if token_iss is None or token_sub is None:
            return False
        return test_iss(token_iss) and test_sub(token_sub)

    return test


def _exact(text: str) -> Test:
    return lambda v: v == text
