"""Property tests of ``gateway.codec.http1_server.H1RequestParser`` (Hypothesis).

1. A valid request, cut into chunks at arbitrary points and fed chunk by chunk, yields the same
   head, body and trailers as when fed whole, and both match what was generated.
2. Pipelined valid requests come out in order, each intact.
3. Random bytes, and valid requests with random damage, never raise anything but ``H1Error``.
4. Generated smuggling variants (Content-Length with Transfer-Encoding, repeated
   Content-Length, a non-final ``chunked``, obs-fold, bare CR/LF, NUL) always raise ``H1Error``
   with status 400, and no request reaches the sink.

Plus fixed examples of the header-size accounting, which bounds only the header block.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.codec.errors import H1Error
from gateway.codec.http1_server import H1RequestParser
from gateway.codec.messages import Headers, RequestHead

pytestmark = pytest.mark.timeout(60)

MAX_HEADER_BYTES = 64 * 1024
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- a recording sink ----------------------------------------------------------------------------


@dataclass
class Seen:
    head: RequestHead
    body: bytes = b""
    ended: bool = False
    trailers: Headers | None = None

    def key(self) -> tuple[object, ...]:
        h = self.head
        return (
            h.method, h.path, h.authority, h.headers, h.version, h.content_length,
            h.end_stream, h.scheme, self.body, self.ended, self.trailers,
        )  # fmt: skip


@dataclass
class Sink:
    requests: list[Seen] = field(default_factory=list)

    def on_request(self, head: RequestHead) -> None:
        self.requests.append(Seen(head))

    def on_body(self, data: bytes) -> None:
        assert self.requests and not self.requests[-1].ended
        assert isinstance(data, bytes) and data
        self.requests[-1].body += data

    def on_request_end(self, trailers: Headers | None) -> None:
        assert self.requests and not self.requests[-1].ended
        self.requests[-1].ended = True
        self.requests[-1].trailers = trailers


def parse(chunks: list[bytes], max_header_bytes: int = MAX_HEADER_BYTES) -> Sink:
    sink = Sink()
    parser = H1RequestParser(sink, max_header_bytes=max_header_bytes)
    for c in chunks:
        parser.feed(c)
    return sink


def split(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(raw), *(min(c, len(raw)) for c in cuts)})
    return [raw[a:b] for a, b in pairwise(points)]


# -- generating valid requests -------------------------------------------------------------------

TOKEN = string.ascii_letters + string.digits + "-"
PATH_CHARS = string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:@/"
VALUE_CHARS = "".join(chr(c) for c in range(0x21, 0x7F)) + "\xe9\xff"
# Names with a framing or connection meaning are generated on purpose below, never at random.
RESERVED = {"host", "content-length", "transfer-encoding", "connection", "upgrade",
            "keep-alive", "proxy-connection", "expect", "te", "trailer"}  # fmt: skip


@dataclass
class Request:
    method: str
    path: str
    host: str
    headers: list[tuple[str, str]]  # as sent (case preserved), without framing headers
    body: bytes
    framing: str  # "none", "length", "chunked"
    chunks: list[int]  # chunk sizes for "chunked"
    trailers: list[tuple[str, str]]

    def raw(self) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        if self.framing == "length":
            lines.append(f"Content-Length: {len(self.body)}")
        elif self.framing == "chunked":
            lines.append("Transfer-Encoding: chunked")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.framing != "chunked":
            return head + self.body
        out = bytearray(head)
        pos = 0
        for size in [*self.chunks, len(self.body) - sum(self.chunks)]:
            if size:
                out += b"%x\r\n" % size + self.body[pos : pos + size] + b"\r\n"
                pos += size
        out += b"0\r\n"
        out += "".join(f"{k}: {v}\r\n" for k, v in self.trailers).encode("latin-1")
        out += b"\r\n"
        return bytes(out)

    def expected(self) -> tuple[object, ...]:
        headers: Headers = [(b"host", self.host.encode())]
        headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in self.headers]
        if self.framing == "length":
            headers.append((b"content-length", str(len(self.body)).encode()))
            length: int | None = len(self.body)
        elif self.framing == "chunked":
            headers.append((b"transfer-encoding", b"chunked"))
            length = None
        else:
            length = 0
        end = self.framing != "chunked" and not self.body
        trailers = (
            [(k.lower().encode(), v.encode("latin-1")) for k, v in self.trailers]
            if self.trailers
            else None
        )
        return (
            self.method, self.path, self.host, headers, "1.1", length, end, "http",
            self.body, True, trailers,
        )  # fmt: skip


names = (
    st.text(TOKEN, min_size=1, max_size=16)
    .map(lambda s: "X-" + s)
    .filter(lambda s: s.lower() not in RESERVED)
)
values = st.text(VALUE_CHARS + " \t", max_size=40).map(lambda s: s.strip(" \t"))


@st.composite
def requests(draw: st.DrawFn) -> Request:
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    body = b"" if framing == "none" else draw(st.binary(max_size=3000))
    chunks: list[int] = []
    if framing == "chunked" and body:
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=5)))
        chunks = [b - a for a, b in pairwise([0, *cuts])]
    return Request(
        method=draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])),
        path="/" + draw(st.text(PATH_CHARS, max_size=60)),
        host=draw(
            st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,10}){0,3}(:[0-9]{1,5})?", fullmatch=True)
        ),
        headers=draw(st.lists(st.tuples(names, values), max_size=12)),
        body=body,
        framing=framing,
        chunks=chunks,
        trailers=draw(st.lists(st.tuples(names, values), max_size=3))
        if framing == "chunked"
        else [],
    )


# -- 1. chunking does not matter -----------------------------------------------------------------


@PROPS
@given(req=requests(), data=st.data())
def test_any_split_gives_the_same_request(req: Request, data: st.DataObject) -> None:
    raw = req.raw()
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=20))
    whole = parse([raw])
    pieces = parse(split(raw, cuts))
    assert [r.key() for r in whole.requests] == [req.expected()]
    assert [r.key() for r in pieces.requests] == [req.expected()]


@PROPS
@given(req=requests())
def test_byte_at_a_time_gives_the_same_request(req: Request) -> None:
    raw = req.raw()
    sink = parse([raw[i : i + 1] for i in range(len(raw))])
    assert [r.key() for r in sink.requests] == [req.expected()]


# -- 2. pipelining -------------------------------------------------------------------------------


@PROPS
@given(reqs=st.lists(requests(), min_size=2, max_size=6), data=st.data())
def test_pipelined_requests_come_out_in_order(reqs: list[Request], data: st.DataObject) -> None:
    raw = b"".join(r.raw() for r in reqs)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=30))
    sink = parse(split(raw, cuts))
    assert [r.key() for r in sink.requests] == [r.expected() for r in reqs]


# -- 3. noise --------------------------------------------------------------------------------------


def _feed_noise(chunks: list[bytes]) -> None:
    sink = Sink()
    parser = H1RequestParser(sink, max_header_bytes=4096)
    try:
        for c in chunks:
            parser.feed(c)
    except H1Error as err:
        assert 400 <= err.status < 500
        assert isinstance(err.reason, str)


@settings(max_examples=300, deadline=None)
@given(noise=st.lists(st.binary(max_size=200), max_size=8))
def test_random_bytes_raise_only_h1error(noise: list[bytes]) -> None:
    _feed_noise(noise)


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from([b"GET / HTTP/1.1\r\n", b"POST /x HTTP/1.1\r\nHost: a\r\n", b"G"]),
    noise=st.binary(max_size=300),
)
def test_noise_after_a_valid_start_raises_only_h1error(prefix: bytes, noise: bytes) -> None:
    _feed_noise([prefix, noise])


@PROPS
@given(req=requests(), data=st.data())
def test_damaged_requests_raise_only_h1error(req: Request, data: st.DataObject) -> None:
    raw = bytearray(req.raw())
    for _ in range(data.draw(st.integers(1, 5))):
        i = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        b = data.draw(st.sampled_from([0, 0x0D, 0x0A, 0x20, 0x09, 0x3A, 0x7F, 0xFF, 0x30]))
        if op == "flip":
            raw[i] = b
        elif op == "insert":
            raw.insert(i, b)
        else:
            del raw[i]
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=6))
    _feed_noise(split(bytes(raw), cuts))


# -- 4. smuggling --------------------------------------------------------------------------------


def _case(s: str, flips: list[bool]) -> str:
    return "".join(c.upper() if f else c for c, f in zip(s, flips + [False] * len(s), strict=False))


@st.composite
def smuggling(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from([
        "cl+te", "cl+cl", "te-not-final-chunked", "obs-fold", "bare-cr", "bare-lf", "nul",
    ]))  # fmt: skip
    flips = draw(st.lists(st.booleans(), max_size=20))
    cl, te = _case("content-length", flips), _case("transfer-encoding", flips)
    n = draw(st.integers(0, 99))
    framing: list[str]
    if kind == "cl+te":
        framing = [f"{cl}: {n}", f"{te}: {draw(st.sampled_from(['chunked', 'Chunked']))}"]
        framing = draw(st.permutations(framing))
    elif kind == "cl+cl":
        m = draw(st.one_of(st.just(n), st.integers(0, 99)))
        framing = [f"{cl}: {n}", f"{cl}: {m}"]
    elif kind == "te-not-final-chunked":
        value = draw(st.sampled_from([
            "gzip, chunked", "chunked, gzip", "identity", "chunked, chunked", "gzip",
            "deflate,chunked", "chunked;q=1", "x-chunked", "chunkedx",
        ]))  # fmt: skip
        framing = [f"{te}: {value}"]
    elif kind == "obs-fold":
        name = draw(st.sampled_from([te, "X-Folded", cl]))
        framing = [f"{name}: a\r\n{draw(st.sampled_from([' ', chr(9)]))}chunked"]
    elif kind == "bare-cr":
        framing = [f"X-V: a\rb{draw(st.sampled_from(['', 'c']))}"]
    elif kind == "bare-lf":
        framing = ["X-V: a\nX-W: b"]
    else:
        framing = [f"X-V: a{chr(0)}b"]
    others = [f"{k}: {v}" for k, v in draw(st.lists(st.tuples(names, values), max_size=4))]
    lines = draw(st.permutations(["Host: h", *others, *framing]))
    return ("POST /s HTTP/1.1\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
    )


@PROPS
@given(raw=smuggling(), data=st.data())
def test_smuggling_variants_always_get_400(raw: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=6))
    sink = Sink()
    parser = H1RequestParser(sink, max_header_bytes=MAX_HEADER_BYTES)
    with pytest.raises(H1Error) as info:
        for c in split(raw, cuts):
            parser.feed(c)
    assert info.value.status == 400, info.value.reason
    assert sink.requests == [], "a smuggling request reached the sink"


# -- header size accounting ------------------------------------------------------------------------


def test_header_block_over_the_limit_is_431() -> None:
    with pytest.raises(H1Error) as info:
        parse([b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"], 4096)
    assert info.value.status == 431


def test_header_block_over_the_limit_is_431_when_trickled() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    with pytest.raises(H1Error) as info:
        parse([raw[i : i + 100] for i in range(0, len(raw), 100)], 4096)
    assert info.value.status == 431


def test_body_in_the_same_read_as_the_head_is_not_header_bytes() -> None:
    body = b"b" * 100_000
    sink = parse([b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + body], 4096)
    assert sink.requests[0].body == body


def test_body_in_the_read_that_ends_a_split_head_is_not_header_bytes() -> None:
    body = b"b" * 100_000
    sink = parse(
        [b"POST /x HTTP/1.1\r\nHost: a\r\n", b"Content-Length: 100000\r\n\r\n" + body],
        MAX_HEADER_BYTES,
    )
    assert sink.requests[0].body == body


def test_pipelined_requests_after_a_split_head_are_not_header_bytes() -> None:
    nxt = b"GET /n HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 1000 + b"\r\n\r\n"
    sink = parse([b"GET /first HTTP/1.1\r\nHo", b"st: a\r\n\r\n" + nxt * 100], MAX_HEADER_BYTES)
    assert len(sink.requests) == 101
