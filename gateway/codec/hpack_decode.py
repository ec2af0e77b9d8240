"""An HPACK decoder for the header blocks the proxy receives (RFC 7541), faster than hpack's.

It keeps the connection's dynamic table itself and decodes straight to ``(bytes, bytes)``
pairs, without hpack's per-field logging, wrappers and Unicode handling; in the compiled
build it runs as C. Huffman-coded strings go through hpack's own ``decode_huffman``. The
limits stay those h2 sets on its hpack ``Decoder`` (SETTINGS_MAX_HEADER_LIST_SIZE and
SETTINGS_HEADER_TABLE_SIZE), read at every block, and errors are hpack's exception types,
so h2 reports them as it always does: an oversized list is a DenialOfServiceError (HPACK
bombs), anything malformed a COMPRESSION_ERROR. Installed by ``gateway.codec.http2``.
"""

from __future__ import annotations

from collections import deque

from hpack.exceptions import HPACKDecodingError, InvalidTableSizeError, OversizedHeaderListError
from hpack.hpack import Decoder
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

_STATIC: tuple[tuple[bytes, bytes], ...] = tuple(HeaderTable.STATIC_TABLE)
_STATIC_LEN = len(_STATIC)
_ENTRY_OVERHEAD = 32  # RFC 7541 §4.1
_MAX_INTEGER_SHIFT = 28  # no legitimate HPACK integer needs more than four continuation bytes


def decode_integer(data: bytes, i: int, prefix_bits: int) -> tuple[int, int]:
    """RFC 7541 §5.1: the integer at ``data[i]`` and the index after it."""
    mask = (1 << prefix_bits) - 1
    value = data[i] & mask
    i += 1
    if value < mask:
        return value, i
    shift = 0
    end = len(data)
    while True:
        if i >= end:
            raise HPACKDecodingError("truncated integer")
        b = data[i]
        i += 1
        value += (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > _MAX_INTEGER_SHIFT:
            raise HPACKDecodingError("integer too long")


def decode_string(data: bytes, i: int) -> tuple[bytes, int]:
    if i >= len(data):
        raise HPACKDecodingError("truncated string")
    huffman = data[i] & 0x80
    length, i = decode_integer(data, i, 7)
    end = i + length
    if end > len(data):
        raise HPACKDecodingError("truncated string")
    raw = data[i:end]
    if huffman:
        raw = decode_huffman(raw)
    return raw, end


class TableDecoder:
    """Replaces ``Decoder.decode`` on one connection's h2 decoder."""

    __slots__ = ("_decoder", "_entries", "_max_size", "_size")

    def __init__(self, decoder: Decoder) -> None:
        self._decoder = decoder
        # Newest first: dynamic index 62 is _entries[0].
        self._entries: deque[tuple[bytes, bytes]] = deque()
        self._size = 0
        self._max_size: int = decoder.header_table.maxsize

    @property
    def table_size(self) -> int:
        return self._max_size

    def __call__(self, data: bytes, raw: bool = True) -> list[tuple[bytes, bytes]]:
        limits = self._decoder
        max_list: int = limits.max_header_list_size
        headers: list[tuple[bytes, bytes]] = []
        inflated = 0
        i = 0
        end = len(data)
        while i < end:
            b = data[i]
            if b & 0x80:  # indexed field
                index, i = decode_integer(data, i, 7)
                field = self._get(index)
            elif b & 0x40:  # literal with incremental indexing
                field, i = self._literal(data, i, 6)
                self._add(field)
            elif b & 0x20:  # dynamic table size update
                if headers:
                    raise HPACKDecodingError("table size update after a field")
                size, i = decode_integer(data, i, 5)
                if size > limits.max_allowed_table_size:
                    raise InvalidTableSizeError(f"table size {size} above the allowed maximum")
                self._resize(size)
                continue
            else:  # literal without indexing (0000) or never indexed (0001)
                field, i = self._literal(data, i, 4)
            headers.append(field)
            inflated += _ENTRY_OVERHEAD + len(field[0]) + len(field[1])
            if inflated > max_list:
                raise OversizedHeaderListError(f"a header list larger than {max_list} bytes")
        if self._max_size > limits.max_allowed_table_size:
            raise InvalidTableSizeError("the peer did not shrink its table as we asked")
        return headers

    def _literal(self, data: bytes, i: int, prefix_bits: int) -> tuple[tuple[bytes, bytes], int]:
        """A literal field: an indexed or literal name, then a literal value."""
        index, i = decode_integer(data, i, prefix_bits)
        if index:
            name = self._get(index)[0]
        else:
            name, i = decode_string(data, i)
        value, i = decode_string(data, i)
        return (name, value), i

    def _get(self, index: int) -> tuple[bytes, bytes]:
        if index <= 0:
            raise HPACKDecodingError("index 0")
        if index <= _STATIC_LEN:
            return _STATIC[index - 1]
        j = index - _STATIC_LEN - 1
        if j >= len(self._entries):
            raise HPACKDecodingError(f"index {index} beyond the table")
        return self._entries[j]

    def _add(self, field: tuple[bytes, bytes]) -> None:
        size = _ENTRY_OVERHEAD + len(field[0]) + len(field[1])
        if size > self._max_size:
            # RFC 7541 §4.4: an entry larger than the table empties it and is not added.
            self._entries.clear()
            self._size = 0
            return
        entries = self._entries
        while self._size + size > self._max_size:
            old = entries.pop()
            self._size -= _ENTRY_OVERHEAD + len(old[0]) + len(old[1])
        entries.appendleft(field)
        self._size += size

    def _resize(self, size: int) -> None:
        self._max_size = size
        entries = self._entries
        while self._size > size:
            old = entries.pop()
            self._size -= _ENTRY_OVERHEAD + len(old[0]) + len(old[1])
