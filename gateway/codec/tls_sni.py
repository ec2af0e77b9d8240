"""Read the server name (SNI) from a TLS ClientHello without terminating TLS. Sans-IO.

``parse_client_hello(data)`` returns ``NEED_MORE`` until the whole first handshake record is
in, then the SNI host name (lower-case) or ``None`` when the ClientHello has none. Anything
that is not a TLS handshake raises ``ValueError``. Used by TLS passthrough listeners.
"""

from __future__ import annotations

from typing import Final


class _NeedMore:
    def __repr__(self) -> str:
        return "NEED_MORE"


NEED_MORE: Final = _NeedMore()
MAX_CLIENT_HELLO = 16 * 1024 + 5


def parse_client_hello(data: bytes) -> str | _NeedMore | None:
    if len(data) < 5:
        return NEED_MORE
    if data[0] != 0x16 or data[1] != 0x03:
        raise ValueError("not a TLS handshake")
    record_len = int.from_bytes(data[3:5], "big")
    if record_len > 16 * 1024:
        raise ValueError("TLS record too long")
    if len(data) < 5 + record_len:
        return NEED_MORE
    body = data[5 : 5 + record_len]
    if len(body) < 4 or body[0] != 0x01:
        raise ValueError("not a ClientHello")
    hello_len = int.from_bytes(body[1:4], "big")
    hello = body[4 : 4 + hello_len]
    if len(hello) < hello_len:
        # A ClientHello spread over several records is legal but rare; reject rather than
        # buffer without bound.
        raise ValueError("fragmented ClientHello")
    p = 2 + 32  # version, random
    p = _skip(hello, p, 1)  # session id
    p = _skip(hello, p, 2)  # cipher suites
    p = _skip(hello, p, 1)  # compression methods
    if p == len(hello):
        return None
    ext_end = p + 2 + int.from_bytes(_take(hello, p, 2), "big")
    p += 2
    while p + 4 <= ext_end:
        etype = int.from_bytes(hello[p : p + 2], "big")
        elen = int.from_bytes(hello[p + 2 : p + 4], "big")
        p += 4
        ext = _take(hello, p, elen)
        p += elen
        if etype == 0:  # server_name
            return _server_name(ext)
    return None


def _take(buf: bytes, p: int, n: int) -> bytes:
    if p + n > len(buf):
        raise ValueError("truncated ClientHello")
    return buf[p : p + n]


def _skip(buf: bytes, p: int, len_bytes: int) -> int:
    n = int.from_bytes(_take(buf, p, len_bytes), "big")
    _take(buf, p + len_bytes, n)
    return p + len_bytes + n


def _server_name(ext: bytes) -> str | None:
    if len(ext) < 2:
        raise ValueError("bad server_name extension")
    p = 2
    while p + 3 <= len(ext):
        ntype = ext[p]
        nlen = int.from_bytes(ext[p + 1 : p + 3], "big")
        name = _take(ext, p + 3, nlen)
        p += 3 + nlen
        if ntype == 0:
            return name.decode("ascii").lower()
    return None
