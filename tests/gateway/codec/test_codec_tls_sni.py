"""Unit tests of ``gateway.codec.tls_sni.parse_client_hello`` with real ClientHellos.

The ClientHello bytes come from Python's own TLS stack (``SSLContext.wrap_bio`` over
``ssl.MemoryBIO``), so they carry what real clients send: SNI, ALPN, key shares, GREASE-free
TLS 1.2/1.3 extensions. Partial input must give ``NEED_MORE``; anything that is not a TLS
ClientHello must raise ``ValueError`` (and nothing else).
"""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codec.tls_sni import NEED_MORE, parse_client_hello

pytestmark = pytest.mark.timeout(30)


def client_hello(
    server_hostname: str | None,
    *,
    alpn: list[str] | None = None,
    max_version: ssl.TLSVersion | None = None,
) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if max_version is not None:
        ctx.maximum_version = max_version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    data = outgoing.read()
    assert data[0] == 0x16
    return data


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"server_hostname": "api.example.com"}, "api.example.com", id="plain"),
        pytest.param({"server_hostname": "API.Example.COM"}, "api.example.com", id="lower-cased"),
        pytest.param(
            {"server_hostname": "outbound_.8080_._.svc.ns.svc.cluster.local"},
            "outbound_.8080_._.svc.ns.svc.cluster.local",
            id="istio-auto-passthrough",
        ),
        pytest.param(
            {"server_hostname": "h2.example.com", "alpn": ["h2", "http/1.1"]},
            "h2.example.com",
            id="with-alpn",
        ),
        pytest.param(
            {"server_hostname": "old.example.com", "max_version": ssl.TLSVersion.TLSv1_2},
            "old.example.com",
            id="tls1.2",
        ),
        pytest.param({"server_hostname": None}, None, id="no-sni"),
        pytest.param({"server_hostname": "10.1.2.3"}, None, id="ip-literal-sends-no-sni"),
    ],
)
def test_server_name_from_a_real_client_hello(
    kwargs: dict[str, object], expected: str | None
) -> None:
    hello = client_hello(**kwargs)  # type: ignore[arg-type]
    assert parse_client_hello(hello) == expected


def test_every_prefix_needs_more() -> None:
    hello = client_hello("prefix.example.com", alpn=["h2"])
    for n in range(len(hello)):
        assert parse_client_hello(hello[:n]) is NEED_MORE, n
    assert parse_client_hello(hello) == "prefix.example.com"


def test_bytes_after_the_first_record_are_ignored() -> None:
    hello = client_hello("more.example.com")
    assert parse_client_hello(hello + b"\x17\x03\x03\x00\x05hello") == "more.example.com"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", id="http1"),
        pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", id="h2-preface"),
        pytest.param(b"\x15\x03\x03\x00\x02\x02\x28", id="tls-alert"),
        pytest.param(b"\x16\x02\x00\x00\x05hello", id="ssl2-version"),
        pytest.param(b"\x16\x03\x01\x40\x01" + b"\x00" * 16385, id="record-too-long"),
        pytest.param(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", id="server-hello"),
        pytest.param(b"\x16\x03\x01\x00\x02\x01\x00", id="handshake-too-short"),
        pytest.param(b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00", id="hello-truncated"),
    ],
)
def test_garbage_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_client_hello(data)


def test_hello_split_over_two_records_is_refused() -> None:
    hello = client_hello("split.example.com")
    body = hello[5:]
    first, second = body[:40], body[40:]
    two_records = (
        hello[:3] + len(first).to_bytes(2, "big") + first
        + hello[:3] + len(second).to_bytes(2, "big") + second
    )  # fmt: skip
    with pytest.raises(ValueError):
        parse_client_hello(two_records)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600))
def test_random_bytes_raise_only_value_error(data: bytes) -> None:
    try:
        result = parse_client_hello(data)
    except ValueError:
        return
    assert result is NEED_MORE or result is None or isinstance(result, str)


_HELLO = client_hello("fuzz.example.com", alpn=["h2"])


@settings(max_examples=300, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(5, len(_HELLO) - 1), st.integers(0, 255)), max_size=4))
def test_corrupted_hello_raises_only_value_error(edits: list[tuple[int, int]]) -> None:
    data = bytearray(_HELLO)
    for i, b in edits:
        data[i] = b
    try:
        result = parse_client_hello(bytes(data))
    except ValueError:
        return
    assert result is NEED_MORE or result is None or isinstance(result, str)
