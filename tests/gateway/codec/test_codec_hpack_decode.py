"""The HPACK decoder against hpack's encoder: every block hpack's encoder makes (Huffman or
not, indexed or not, with table size changes) decodes to the same fields, the dynamic table
evicts as RFC 7541 says, and malformed or oversized blocks raise hpack's own errors."""

from __future__ import annotations

import pytest
from hpack import Decoder, Encoder
from hpack.exceptions import HPACKDecodingError, InvalidTableSizeError, OversizedHeaderListError
from hypothesis import given
from hypothesis import strategies as st

from gateway.codec.hpack_decode import TableDecoder

names = st.sampled_from([b":method", b":path", b"user-agent", b"accept", b"x-a", b"cookie"]) | (
    st.binary(min_size=1, max_size=30).map(lambda b: b.lower())
)
values = st.sampled_from([b"GET", b"/", b"", b"h2load"]) | st.binary(max_size=200)
blocks = st.lists(st.lists(st.tuples(names, values), max_size=15), min_size=1, max_size=6)


def _decoder(max_list: int = 1 << 20) -> TableDecoder:
    hpack_decoder = Decoder()
    hpack_decoder.max_header_list_size = max_list
    return TableDecoder(hpack_decoder)


@given(blocks, st.booleans(), st.sampled_from([4096, 256, 64, 0]))
def test_blocks_from_hpack_decode_the_same(
    fields: list[list[tuple[bytes, bytes]]], huffman: bool, table_size: int
) -> None:
    encoder = Encoder()
    decoder = _decoder()
    reference = Decoder()
    reference.max_header_list_size = 1 << 20
    for n, block in enumerate(fields):
        if n == 1:
            encoder.header_table_size = table_size  # an update at the start of this block
        encoded = encoder.encode(block, huffman=huffman)
        assert decoder(encoded) == block
        assert reference.decode(encoded, raw=True) == block


def test_entries_are_evicted_oldest_first() -> None:
    encoder = Encoder()
    encoder.header_table_size = 100
    decoder = _decoder()
    for i in range(10):
        block = [(b"x-key", b"v%d" % i)]
        assert decoder(encoder.encode(block)) == block
    assert decoder.table_size == 100


def test_header_list_over_the_limit_is_refused() -> None:
    encoder = Encoder()
    decoder = _decoder(max_list=1000)
    with pytest.raises(OversizedHeaderListError):
        decoder(encoder.encode([(b"x-big", b"a" * 2000)]))


def test_table_size_above_the_allowed_is_refused() -> None:
    decoder = _decoder()
    with pytest.raises(InvalidTableSizeError):
        decoder(bytes([0x3F, 0xE1, 0x3F]))  # size update to 8192 > 4096


@pytest.mark.parametrize(
    "block",
    [
        bytes([0x80]),  # index 0
        bytes([0xFF, 0x80]),  # truncated integer
        bytes([0xBF]),  # dynamic index 63 with an empty table
        bytes([0x40, 0x05, 0x61]),  # truncated name
        bytes([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),  # integer too long
        bytes([0x82, 0x20]),  # size update after a field
    ],
)
def test_malformed_blocks_raise_decoding_errors(block: bytes) -> None:
    with pytest.raises(HPACKDecodingError):
        _decoder()(block)
