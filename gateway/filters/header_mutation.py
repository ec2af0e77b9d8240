"""Gateway API header modification (``HTTPHeaderFilter``) compiled for a header list.

Shared by ``request_header_modifier`` and ``response_header_modifier``; built once per rule
when the filter chain is built, applied in place per request or response.

Semantics, in Envoy's order (remove, then set, then add):

* ``remove`` drops every value of the named headers;
* ``set`` replaces every value of the header with one value;
* ``add`` appends a value and keeps those already there (sent as one more field line, which
  RFC 9110 §5.3 makes equivalent to ``existing, new``, and which ``set-cookie`` requires).

Names compare case-insensitively (they are stored lower-case). Names or values that could
split a header (CR, LF, NUL) or pseudo-header names are refused at build time.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.codec.messages import Headers, RequestHead
from gateway.config.snapshot import HeaderModifier

_FORBIDDEN = ("\r", "\n", "\x00")


def _check(field: str, text: str) -> None:
    if any(c in text for c in _FORBIDDEN):
        raise ValueError(f"{field}: {text!r} contains CR, LF or NUL")


def encode_name(field: str, name: str) -> bytes:
    """A configured header name, validated and lower-cased."""
    _check(field, name)
    if not name or name.startswith(":") or any(c in name for c in " \t:"):
        raise ValueError(f"{field}: {name!r} is not a valid header name")
    return name.lower().encode("latin-1")


def encode_value(field: str, value: str) -> bytes:
    _check(field, value)
    return value.encode("utf-8")


class HeaderMutation:
    """One ``HeaderModifier``, ready to apply to a mutable header list."""

    __slots__ = ("_append", "_drop")

    def __init__(
        self,
        modifier: HeaderModifier,
        *,
        field: str = "modifier",
        skip: Iterable[bytes] = (),
    ) -> None:
        """``skip`` names headers the caller handles itself (``host`` on requests)."""
        skipped = frozenset(skip)
        drop: set[bytes] = set()
        append: list[tuple[bytes, bytes]] = []
        for i, name in enumerate(modifier.remove):
            key = encode_name(f"{field}.remove[{i}]", name)
            if key not in skipped:
                drop.add(key)
        for i, (name, value) in enumerate(modifier.set):
            key = encode_name(f"{field}.set[{i}].name", name)
            if key not in skipped:
                drop.add(key)
                append.append((key, encode_value(f"{field}.set[{i}].value", value)))
        for i, (name, value) in enumerate(modifier.add):
            key = encode_name(f"{field}.add[{i}].name", name)
            if key not in skipped:
                append.append((key, encode_value(f"{field}.add[{i}].value", value)))
        self._drop = frozenset(drop)
        self._append = tuple(append)

    @property
    def is_noop(self) -> bool:
        return not self._drop and not self._append

    def apply(self, headers: Headers) -> None:
        """Modify ``headers`` in place."""
        drop = self._drop
        if drop and any(k in drop for k, _ in headers):
            headers[:] = [(k, v) for k, v in headers if k not in drop]
        if self._append:
            headers.extend(self._append)

    def __repr__(self) -> str:
        names = sorted({k.decode() for k in self._drop} | {k.decode() for k, _ in self._append})
        return f"<HeaderMutation {', '.join(names) or 'noop'}>"


def replace_authority(request: RequestHead, authority: str) -> None:
    """Point the request at another authority: ``RequestHead.authority`` and, when the
    HTTP/1.1 codec kept one, the ``host`` field line (never a second one)."""
    request.authority = authority
    headers = request.headers
    for i, (k, _) in enumerate(headers):
        if k == b"host":
            headers[i] = (b"host", authority.encode("utf-8"))
