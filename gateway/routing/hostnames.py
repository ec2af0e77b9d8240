"""Hostname matching for the Gateway API: exact names, ``*.`` wildcards, and request authorities.

``gateway.routing.table`` uses this twice per port: once to pick the most specific listener
for a request's Host, then to pick the most specific route hostname inside that listener. The
filters use :func:`split_authority` to rebuild a Location. Pure code, no I/O.

Semantics (Gateway API ``Hostname``): names compare case-insensitively; a pattern
``*.example.com`` matches any name with one or more labels in front of ``example.com`` (so
``a.example.com`` and ``a.b.example.com``) but not ``example.com`` itself. When several
patterns match, an exact name beats every wildcard and a longer wildcard beats a shorter one.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


def normalize_hostname(name: str) -> str:
    """Lower-case a configured hostname or pattern and drop a trailing root dot."""
    name = name.strip().lower()
    if name.endswith(".") and name != ".":
        name = name[:-1]
    return name


def split_authority(authority: str) -> tuple[str, int | None]:
    """Split a Host / ``:authority`` value into (host, port).

    The host is lower-cased and keeps the brackets of an IPv6 literal (``[::1]``) so that it
    can be put back into a URL as is. A missing or non-numeric port gives ``None``.
    """
    authority = authority.strip()
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:  # malformed literal: keep it whole, it will only match catch-alls
            return authority.lower(), None
        host = authority[: end + 1].lower()
        rest = authority[end + 1 :]
        if rest.startswith(":") and rest[1:].isdigit():
            return host, int(rest[1:])
        return host, None
    colon = authority.rfind(":")
    # More than one colon without brackets is a bare IPv6 address, not host:port.
    if colon >= 0 and authority.find(":") == colon:
        port = authority[colon + 1 :]
        host = authority[:colon]
        return _trim_dot(host.lower()), int(port) if port.isdigit() else None
    return _trim_dot(authority.lower()), None


def host_from_authority(authority: str) -> str:
    """The lower-cased host part of an authority, port stripped."""
    return split_authority(authority)[0]


def _trim_dot(host: str) -> str:
    return host[:-1] if host.endswith(".") else host


def is_wildcard(pattern: str) -> bool:
    return pattern.startswith("*.") or pattern == "*"


def hostname_matches(pattern: str, host: str) -> bool:
    """Whether a normalized ``pattern`` (exact or ``*.`` wildcard) matches a normalized host."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        suffix = pattern[1:]  # ".example.com"
        return host.endswith(suffix) and len(host) > len(suffix)
    return pattern == host


def intersect_hostnames(listener: str | None, route: str) -> str | None:
    """The hostname a route serves through a listener, or ``None`` when they do not meet.

    A route hostname may not be less specific than its listener's: ``*.example.com`` on a
    ``*.foo.example.com`` listener serves ``*.foo.example.com`` (Gateway API listener
    isolation conformance). Both arguments must be normalized.
    """
    if listener is None or listener == "*":
        return route
    if route == "*":
        return listener
    lw, rw = is_wildcard(listener), is_wildcard(route)
    if not lw and not rw:
        return route if route == listener else None
    if not lw:
        return listener if hostname_matches(route, listener) else None
    if not rw:
        return route if hostname_matches(listener, route) else None
    # Both wildcards: the longer suffix is the intersection when one contains the other.
    if listener.endswith(route[1:]):
        return listener
    if route.endswith(listener[1:]):
        return route
    return None


class HostIndex(Generic[T]):
    """Patterns mapped to values, looked up by the most specific pattern matching a host.

    Lookup is one dict probe for the exact names, then one probe per label of the host for
    the wildcards (longest suffix first), then the catch-all. Built once, read per request.
    """

    __slots__ = ("any", "exact", "wildcard")

    def __init__(self) -> None:
        self.exact: dict[str, T] = {}
        self.wildcard: dict[str, T] = {}  # keyed by the suffix with its dot: ".example.com"
        self.any: T | None = None

    def add(self, pattern: str | None, value: T) -> None:
        """Add a normalized pattern; ``None`` or ``*`` is the catch-all. Last add wins."""
        if pattern is None or pattern == "*":
            self.any = value
        elif pattern.startswith("*."):
            self.wildcard[pattern[1:]] = value
        else:
            self.exact[pattern] = value

    def lookup(self, host: str) -> T | None:
        """The value of the most specific pattern matching the normalized ``host``."""
        value = self.exact.get(host)
        if value is not None:
            return value
        if self.wildcard:
            dot = host.find(".")
            # dot > 0: a wildcard needs at least one label in front of its suffix.
            while dot > 0:
                value = self.wildcard.get(host[dot:])
                if value is not None:
                    return value
                dot = host.find(".", dot + 1)
        return self.any

    def values(self) -> list[T]:
        out = list(self.exact.values()) + list(self.wildcard.values())
        if self.any is not None:
            out.append(self.any)
        return out

    def __len__(self) -> int:
        return len(self.exact) + len(self.wildcard) + (self.any is not None)

    def __repr__(self) -> str:
        return (
            f"<HostIndex [{len(self.exact)} exact, {len(self.wildcard)} wildcard, "
            f"{'1' if self.any is not None else '0'} any]>"
        )
