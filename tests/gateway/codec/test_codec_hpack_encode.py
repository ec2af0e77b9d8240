"""The static-table HPACK encoder: what it emits decodes to the same fields with hpack's own
decoder, whatever the fields, cache state or pending table-size updates."""

from __future__ import annotations

from hpack import Decoder, Encoder
from hypothesis import given
from hypothesis import strategies as st

from gateway.codec.hpack_encode import StaticEncoder, encode_integer

names = st.sampled_from(
    [b":status", b"content-type", b"server", b"date", b"cookie", b"authorization", b"x-a"]
) | st.binary(min_size=1, max_size=40).map(lambda b: b.lower().replace(b":", b"x"))
values = st.sampled_from([b"200", b"404", b"", b"gzip"]) | st.binary(max_size=300)
fields = st.lists(st.tuples(names, values), max_size=20)


@given(st.lists(fields, min_size=1, max_size=5))
def test_blocks_decode_to_the_same_fields(blocks: list[list[tuple[bytes, bytes]]]) -> None:
    encoder = StaticEncoder(Encoder())
    decoder = Decoder()
    for block in blocks:
        assert decoder.decode(encoder(block), raw=True) == block


def test_pending_table_size_update_is_sent_first() -> None:
    hpack_encoder = Encoder()
    encoder = StaticEncoder(hpack_encoder)
    decoder = Decoder()
    decoder.max_allowed_table_size = 4096
    hpack_encoder.header_table_size = 256
    block = encoder([(b":status", b"200")])
    assert block[0] & 0xE0 == 0x20  # dynamic table size update
    assert decoder.decode(block, raw=True) == [(b":status", b"200")]
    assert decoder.header_table_size == 256
    assert not hpack_encoder.table_size_changes


def test_credentials_are_never_indexed() -> None:
    block = StaticEncoder(Encoder())([(b"authorization", b"Bearer x")])
    assert block[0] & 0xF0 == 0x10


@given(st.integers(min_value=0, max_value=1 << 40), st.sampled_from([4, 5, 6, 7]))
def test_integers_match_the_reference(value: int, prefix: int) -> None:
    from hpack.hpack import encode_integer as reference

    assert encode_integer(value, prefix, 0) == bytes(reference(value, prefix))
