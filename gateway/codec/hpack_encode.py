"""A stateless HPACK encoder for the header blocks the proxy sends (RFC 7541).

hpack's encoder searches and grows a dynamic table for every field, in pure Python; on a
proxy that is a large share of the HTTP/2 cost. This encoder uses only the static table:
a field that is in it whole becomes one index byte, any other becomes a literal *without
indexing* (with the name indexed when the static table has it), never Huffman-coded. The
peer's decoder state never changes, so each field's bytes depend on the field alone and are
cached. Credentials (``authorization``, cookies) are sent *never indexed* (RFC 7541 §7.1.3).

The peer may still shrink its table with SETTINGS_HEADER_TABLE_SIZE; the size update it is
owed is emitted at the start of the next block, as the RFC requires. Installed on h2's
encoder by ``gateway.codec.http2``.
"""

from __future__ import annotations

from collections.abc import Iterable

from hpack.hpack import Encoder
from hpack.table import HeaderTable

_CACHE_MAX = 4096

_FULL: dict[tuple[bytes, bytes], int] = {}
_NAME: dict[bytes, int] = {}
for _i, (_n, _v) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _FULL.setdefault((_n, _v), _i)
    _NAME.setdefault(_n, _i)

_NEVER_INDEXED = frozenset({b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"})


def encode_integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 §5.1; ``first`` holds the pattern bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_field(name: bytes, value: bytes) -> bytes:
    index = _FULL.get((name, value))
    if index is not None:
        return encode_integer(index, 7, 0x80)
    pattern = 0x10 if name in _NEVER_INDEXED else 0x00
    name_index = _NAME.get(name)
    if name_index is not None:
        head = encode_integer(name_index, 4, pattern)
    else:
        head = bytes((pattern,)) + encode_integer(len(name), 7, 0) + name
    return head + encode_integer(len(value), 7, 0) + value


class StaticEncoder:
    """Replaces ``Encoder.encode`` on one connection's h2 encoder."""

    __slots__ = ("_cache", "_encoder")

    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder
        self._cache: dict[tuple[bytes, bytes], bytes] = {}

    def __call__(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = False) -> bytes:
        cache = self._cache
        parts: list[bytes] = []
        changes = self._encoder.table_size_changes
        if changes:
            # The smallest size the peer asked for, then the last one (RFC 7541 §4.2).
            low, last = min(changes), changes[-1]
            if low < last:
                parts.append(encode_integer(low, 5, 0x20))
            parts.append(encode_integer(last, 5, 0x20))
            changes.clear()
        for field in headers:
            key = (field[0], field[1])
            encoded = cache.get(key)
            if encoded is None:
                encoded = encode_field(key[0], key[1])
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[key] = encoded
            parts.append(encoded)
        return b"".join(parts)
