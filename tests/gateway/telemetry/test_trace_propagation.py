"""W3C trace context and B3 parsing, extraction preference, and what is written upstream."""

from __future__ import annotations

import pytest
from opentelemetry.trace import get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.telemetry import propagation as p
from gateway.telemetry.propagation import TraceContext

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"
TID_INT = int(TID, 16)
SID_INT = int(SID, 16)
TID64 = "a3ce929d0e0e4736"
PARENT = "b7ad6b7169203331"


# --- traceparent ---------------------------------------------------------------------------

VALID_TRACEPARENT = [
    (f"00-{TID}-{SID}-01", TID_INT, SID_INT, True),
    (f"00-{TID}-{SID}-00", TID_INT, SID_INT, False),
    (f"00-{TID}-{SID}-09", TID_INT, SID_INT, True),  # unknown flag bits ignored
    (f"00-{TID}-{SID}-02", TID_INT, SID_INT, False),
    (f" 00-{TID}-{SID}-01\t", TID_INT, SID_INT, True),  # OWS around the value
    (f"01-{TID}-{SID}-01", TID_INT, SID_INT, True),  # a later version, same length
    (f"cc-{TID}-{SID}-01-what-the-future-holds", TID_INT, SID_INT, True),
    (f"00-{'0' * 31}1-{'0' * 15}1-01", 1, 1, True),
]

INVALID_TRACEPARENT = [
    "",
    "00",
    f"ff-{TID}-{SID}-01",  # version ff is forbidden
    f"00-{TID}-{SID}-01-extra",  # version 00 has exactly four fields
    f"00-{TID}-{SID}-01 x",
    f"00-{TID.upper()}-{SID}-01",  # upper-case hex
    f"00-{TID}-{SID.upper()}-01",
    f"00-{TID}-{SID}-0A",
    f"0A-{TID}-{SID}-01",
    f"00-{'0' * 32}-{SID}-01",  # all-zero trace id
    f"00-{TID}-{'0' * 16}-01",  # all-zero parent id
    f"00-{TID[:-1]}-{SID}-01",  # short trace id
    f"00-{TID}-{SID[:-1]}-01",
    f"00-{TID}0-{SID}-01",
    f"00-{TID}-{SID}-1",
    f"00_{TID}_{SID}_01",
    f"00-{TID[:-1]}g-{SID}-01",
    f"cc-{TID}-{SID}-01.x",  # a later version must go on with "-"
    f"cc-{TID}-{SID}",
    f"{TID}-{SID}-01",
]


@pytest.mark.parametrize(("value", "trace_id", "span_id", "sampled"), VALID_TRACEPARENT)
def test_trace_traceparent_valid(value: str, trace_id: int, span_id: int, sampled: bool) -> None:
    ctx = p.parse_traceparent(value.encode())
    assert ctx == TraceContext(trace_id, span_id, sampled, formats=p.W3C)


@pytest.mark.parametrize("value", INVALID_TRACEPARENT)
def test_trace_traceparent_invalid(value: str) -> None:
    assert p.parse_traceparent(value.encode()) is None


@pytest.mark.parametrize("value", [v for v, *_ in VALID_TRACEPARENT if v.startswith("00")])
def test_trace_traceparent_agrees_with_opentelemetry(value: str) -> None:
    """OpenTelemetry's own W3C propagator reads the same ids and decision."""
    ours = p.parse_traceparent(value.encode())
    assert ours is not None
    theirs = get_current_span(
        TraceContextTextMapPropagator().extract({"traceparent": value.strip()})
    ).get_span_context()
    assert (theirs.trace_id, theirs.span_id, theirs.trace_flags.sampled) == (
        ours.trace_id,
        ours.span_id,
        ours.sampled,
    )


# --- tracestate ----------------------------------------------------------------------------

TRACESTATE_CASES = [
    ([b"congo=t61rcWkgMzE"], b"congo=t61rcWkgMzE"),
    ([b"rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"], b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
    ([b"rojo=1", b"congo=2"], b"rojo=1,congo=2"),  # several fields are one list
    ([b"rojo=1,, ,congo=2"], b"rojo=1,congo=2"),  # empty members are allowed
    ([b"tenant@vendor=v", b"a/b*c_d-e=x y"], b"tenant@vendor=v,a/b*c_d-e=x y"),
    ([b"k=" + b"v" * 256], b"k=" + b"v" * 256),
    ([b",".join(b"k%d=v" % i for i in range(32))], b",".join(b"k%d=v" % i for i in range(32))),
    ([], None),
    ([b""], None),
    ([b"rojo=1,rojo=2"], None),  # duplicate keys
    ([b",".join(b"k%d=v" % i for i in range(33))], None),  # more than 32 members
    ([b"Rojo=1"], None),  # upper-case key
    ([b"rojo"], None),
    ([b"rojo="], None),  # empty value
    ([b"rojo=a=b"], None),  # "=" in a value
    ([b"rojo=a \t"], b"rojo=a"),  # trailing OWS belongs to the list, not the value
    ([b"rojo=a\x01b"], None),  # a control character
    ([b"rojo=\xc3\xa9"], None),  # not ASCII
    ([b"k=" + b"v" * 257], None),
    ([b"1abc=x"], None),  # a simple key starts with a letter
    ([b"ten@Vendor=x"], None),
    ([b"rojo=1", b"bad key=2"], None),
]


@pytest.mark.parametrize(("values", "expected"), TRACESTATE_CASES)
def test_trace_tracestate(values: list[bytes], expected: bytes | None) -> None:
    assert p.parse_tracestate(values) == expected


# --- b3 single header ----------------------------------------------------------------------

VALID_B3 = [
    (f"{TID}-{SID}-1-{PARENT}", TraceContext(TID_INT, SID_INT, True, formats=p.B3_SINGLE)),
    (f"{TID}-{SID}-0", TraceContext(TID_INT, SID_INT, False, formats=p.B3_SINGLE)),
    (f"{TID}-{SID}-d", TraceContext(TID_INT, SID_INT, True, True, formats=p.B3_SINGLE)),
    (f"{TID}-{SID}", TraceContext(TID_INT, SID_INT, None, formats=p.B3_SINGLE)),  # deferred
    (f"{TID64}-{SID}-1", TraceContext(int(TID64, 16), SID_INT, True, formats=p.B3_SINGLE)),
    ("0", TraceContext(0, 0, False, formats=p.B3_SINGLE)),  # deny
    ("1", TraceContext(0, 0, True, formats=p.B3_SINGLE)),
    ("d", TraceContext(0, 0, True, True, formats=p.B3_SINGLE)),
    (f" {TID}-{SID}-1 ", TraceContext(TID_INT, SID_INT, True, formats=p.B3_SINGLE)),
]

INVALID_B3 = [
    "",
    "2",
    "true",
    "D",
    f"{TID}",
    f"{TID}-{SID}-",
    f"{TID}-{SID}-2",
    f"{TID}-{SID}-true",
    f"{TID}-{SID}-1-",
    f"{TID}-{SID}-{PARENT}",  # parent without a sampling state
    f"{TID}-{SID}-1-{PARENT}-x",
    f"{TID.upper()}-{SID}-1",
    f"{TID}-{SID.upper()}-1",
    f"{TID[:-2]}-{SID}-1",  # neither 64 nor 128 bits
    f"{'0' * 32}-{SID}-1",
    f"{TID}-{'0' * 16}-1",
    f"{TID}-{SID}-1-{'0' * 16}",
    f"{TID}-{SID[:-1]}-1",
]


@pytest.mark.parametrize(("value", "expected"), VALID_B3)
def test_trace_b3_single_valid(value: str, expected: TraceContext) -> None:
    assert p.parse_b3(value.encode()) == expected


@pytest.mark.parametrize("value", INVALID_B3)
def test_trace_b3_single_invalid(value: str) -> None:
    assert p.parse_b3(value.encode()) is None


# --- X-B3-* multi header -------------------------------------------------------------------

IDS = {"trace_id": TID, "span_id": SID}


def _multi(trace_id: int, span_id: int, sampled: bool | None, debug: bool = False) -> TraceContext:
    return TraceContext(trace_id, span_id, sampled, debug, formats=p.B3_MULTI)


VALID_MULTI: list[tuple[dict[str, str], TraceContext]] = [
    ({**IDS, "sampled": "1"}, _multi(TID_INT, SID_INT, True)),
    (
        {"trace_id": TID64, "span_id": SID, "parent_span_id": PARENT, "sampled": "0"},
        _multi(int(TID64, 16), SID_INT, False),
    ),
    (IDS, _multi(TID_INT, SID_INT, None)),  # deferred
    ({**IDS, "sampled": "true"}, _multi(TID_INT, SID_INT, True)),  # legacy form
    ({**IDS, "sampled": "False"}, _multi(TID_INT, SID_INT, False)),
    ({**IDS, "flags": "1"}, _multi(TID_INT, SID_INT, True, True)),  # debug implies sampled
    ({**IDS, "flags": "0", "sampled": "1"}, _multi(TID_INT, SID_INT, True)),
    ({"sampled": "0"}, _multi(0, 0, False)),  # a decision alone
    ({"sampled": "1"}, _multi(0, 0, True)),
    ({"flags": "1"}, _multi(0, 0, True, True)),
]

INVALID_MULTI: list[dict[str, str]] = [
    {},
    {"trace_id": TID},  # no span id
    {"span_id": SID, "sampled": "1"},  # no trace id
    {"parent_span_id": PARENT, "sampled": "1"},
    {"trace_id": TID.upper(), "span_id": SID},
    {"trace_id": TID[:-2], "span_id": SID},
    {"trace_id": "0" * 16, "span_id": SID},
    {"trace_id": TID, "span_id": "0" * 16},
    {"trace_id": TID, "span_id": SID + "0"},
    {"trace_id": TID, "span_id": SID, "parent_span_id": "0" * 16},
    {"trace_id": TID, "span_id": SID, "parent_span_id": PARENT[:-1]},
    {"trace_id": TID, "span_id": SID, "sampled": "2"},
    {"trace_id": TID, "span_id": SID, "sampled": "yes"},
    {"trace_id": TID, "span_id": SID, "flags": "2"},
    {"flags": "0"},  # says nothing
]


@pytest.mark.parametrize(("fields", "expected"), VALID_MULTI)
def test_trace_b3_multi_valid(fields: dict[str, str], expected: TraceContext) -> None:
    assert p.parse_b3_multi(**{k: v.encode() for k, v in fields.items()}) == expected


@pytest.mark.parametrize("fields", INVALID_MULTI)
def test_trace_b3_multi_invalid(fields: dict[str, str]) -> None:
    assert p.parse_b3_multi(**{k: v.encode() for k, v in fields.items()}) is None


# --- extraction from a header list ---------------------------------------------------------

TP = f"00-{TID}-{SID}-01".encode()
OTHER_TID = "11111111111111111111111111111111"
B3V = f"{OTHER_TID}-{SID}-0".encode()
H = list[tuple[bytes, bytes]]

EXTRACT_CASES: list[tuple[str, H, TraceContext]] = [
    ("nothing", [(b"host", b"x")], p.EMPTY),
    (
        "traceparent wins over b3 and X-B3",
        [(b"b3", B3V), (b"traceparent", TP), (b"x-b3-traceid", OTHER_TID.encode()),
         (b"x-b3-spanid", SID.encode())],
        TraceContext(TID_INT, SID_INT, True, formats=p.W3C | p.B3_SINGLE | p.B3_MULTI),
    ),
    (
        "invalid traceparent: b3 is next",
        [(b"traceparent", TP.upper()), (b"b3", B3V)],
        TraceContext(int(OTHER_TID, 16), SID_INT, False, formats=p.W3C | p.B3_SINGLE),
    ),
    (
        "b3 wins over X-B3",
        [(b"x-b3-traceid", TID.encode()), (b"x-b3-spanid", SID.encode()), (b"b3", B3V)],
        TraceContext(int(OTHER_TID, 16), SID_INT, False, formats=p.B3_SINGLE | p.B3_MULTI),
    ),
    (
        "invalid b3: X-B3 is next",
        [(b"b3", b"nonsense"), (b"x-b3-traceid", TID.encode()), (b"x-b3-spanid", SID.encode()),
         (b"x-b3-sampled", b"1")],
        TraceContext(TID_INT, SID_INT, True, formats=p.B3_SINGLE | p.B3_MULTI),
    ),
    (
        "tracestate with traceparent",
        [(b"traceparent", TP), (b"tracestate", b"a=1"), (b"tracestate", b"b=2")],
        TraceContext(TID_INT, SID_INT, True, tracestate=b"a=1,b=2", formats=p.W3C),
    ),
    (
        "invalid tracestate is dropped, traceparent kept",
        [(b"traceparent", TP), (b"tracestate", b"a=1,a=2")],
        TraceContext(TID_INT, SID_INT, True, formats=p.W3C),
    ),
    (
        "tracestate without a valid traceparent is ignored",
        [(b"traceparent", b"junk"), (b"tracestate", b"a=1"), (b"b3", B3V)],
        TraceContext(int(OTHER_TID, 16), SID_INT, False, formats=p.W3C | p.B3_SINGLE),
    ),
    (
        "two traceparent fields are invalid",
        [(b"traceparent", TP), (b"traceparent", TP)],
        TraceContext(formats=p.W3C),
    ),
    (
        "two b3 fields are invalid",
        [(b"b3", B3V), (b"b3", B3V)],
        TraceContext(formats=p.B3_SINGLE),
    ),
    (
        "a repeated X-B3 field is invalid",
        [(b"x-b3-traceid", TID.encode()), (b"x-b3-spanid", SID.encode()),
         (b"x-b3-spanid", SID.encode())],
        TraceContext(formats=p.B3_MULTI),
    ),
    ("b3 deny", [(b"b3", b"0")], TraceContext(0, 0, False, formats=p.B3_SINGLE)),
    (
        "X-B3-Sampled alone",
        [(b"x-b3-sampled", b"0")],
        TraceContext(0, 0, False, formats=p.B3_MULTI),
    ),
    (
        "X-B3 debug",
        [(b"x-b3-flags", b"1"), (b"x-b3-traceid", TID64.encode()), (b"x-b3-spanid", SID.encode())],
        TraceContext(int(TID64, 16), SID_INT, True, True, formats=p.B3_MULTI),
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "expected"), [c[1:] for c in EXTRACT_CASES], ids=[c[0] for c in EXTRACT_CASES]
)
def test_trace_extract(headers: H, expected: TraceContext) -> None:
    assert p.extract(headers) == expected


# --- what goes upstream --------------------------------------------------------------------

CHILD = 0x1122334455667788
SERVER = 0x0102030405060708


def _out(formats: int, **kw: object) -> dict[bytes, bytes]:
    headers = p.outgoing(formats, TID_INT, CHILD, True, parent_span_id=SERVER, **kw)  # type: ignore[arg-type]
    names = [k for k, _ in headers]
    assert len(names) == len(set(names))
    return dict(headers)


def test_trace_outgoing_w3c_only_when_the_request_had_traceparent() -> None:
    out = _out(p.W3C, tracestate=b"a=1,b=2")
    assert out == {
        b"traceparent": f"00-{TID}-1122334455667788-01".encode(),
        b"tracestate": b"a=1,b=2",
    }


def test_trace_outgoing_w3c_and_b3_when_the_request_had_none() -> None:
    out = _out(0)
    assert out == {
        b"traceparent": f"00-{TID}-1122334455667788-01".encode(),
        b"b3": f"{TID}-1122334455667788-1-0102030405060708".encode(),
    }


def test_trace_outgoing_keeps_each_b3_form_the_request_had() -> None:
    out = _out(p.B3_SINGLE | p.B3_MULTI)
    assert out == {
        b"traceparent": f"00-{TID}-1122334455667788-01".encode(),
        b"b3": f"{TID}-1122334455667788-1-0102030405060708".encode(),
        b"x-b3-traceid": TID.encode(),
        b"x-b3-spanid": b"1122334455667788",
        b"x-b3-parentspanid": b"0102030405060708",
        b"x-b3-sampled": b"1",
    }


def test_trace_outgoing_debug_and_not_sampled() -> None:
    debug = _out(p.B3_SINGLE | p.B3_MULTI, debug=True)
    assert debug[b"b3"].split(b"-")[2] == b"d"
    assert debug[b"x-b3-flags"] == b"1" and b"x-b3-sampled" not in debug
    no = dict(p.outgoing(p.B3_MULTI | p.B3_SINGLE, TID_INT, CHILD, False))
    assert no[b"traceparent"].endswith(b"-00")
    assert no[b"b3"] == f"{TID}-1122334455667788-0".encode()  # no parent: left out
    assert no[b"x-b3-sampled"] == b"0" and b"x-b3-parentspanid" not in no


def test_trace_outgoing_64_bit_trace_ids_stay_64_bit_in_b3() -> None:
    tid = int(TID64, 16)
    out = dict(p.outgoing(p.B3_SINGLE | p.B3_MULTI, tid, CHILD, True))
    assert out[b"x-b3-traceid"] == TID64.encode()
    assert out[b"b3"].startswith(TID64.encode() + b"-")
    assert out[b"traceparent"] == f"00-{'0' * 16}{TID64}-1122334455667788-01".encode()


@pytest.mark.parametrize(
    "formats", [0, p.W3C, p.B3_SINGLE, p.B3_MULTI, p.W3C | p.B3_SINGLE | p.B3_MULTI]
)
def test_trace_outgoing_roundtrips_through_extract(formats: int) -> None:
    """Each form written, read on its own, gives the same ids and decision back."""
    headers = p.outgoing(formats, TID_INT, CHILD, True, parent_span_id=SERVER)
    groups = [
        [h for h in headers if h[0] == b"traceparent"],
        [h for h in headers if h[0] == b"b3"],
        [h for h in headers if h[0].startswith(b"x-b3-")],
    ]
    for group in (g for g in groups if g):
        ctx = p.extract(group)
        assert (ctx.trace_id, ctx.span_id, ctx.sampled) == (TID_INT, CHILD, True)
    assert groups[0], "traceparent is always written"


def test_trace_outgoing_is_read_by_opentelemetry() -> None:
    carrier = {
        k.decode(): v.decode()
        for k, v in p.outgoing(p.W3C, TID_INT, CHILD, True, tracestate=b"a=1,b=2")
    }
    sc = get_current_span(TraceContextTextMapPropagator().extract(carrier)).get_span_context()
    assert (sc.trace_id, sc.span_id, sc.trace_flags.sampled) == (TID_INT, CHILD, True)
    assert sc.trace_state.to_header() == "a=1,b=2"


def test_trace_inject_replaces_every_old_trace_header() -> None:
    headers: H = [
        (b"host", b"svc"),
        (b"traceparent", TP),
        (b"tracestate", b"old=1"),
        (b"x-b3-traceid", TID.encode()),
        (b"x-b3-spanid", SID.encode()),
        (b"x-b3-sampled", b"1"),
        (b"x-b3-parentspanid", PARENT.encode()),
        (b"x-b3-flags", b"1"),
        (b"b3", b"1"),
        (b"accept", b"*/*"),
    ]
    new = p.outgoing(p.W3C | p.B3_SINGLE, TID_INT, CHILD, False)
    p.inject(headers, new)
    assert headers == [(b"host", b"svc"), (b"accept", b"*/*"), *new]
    # a request without trace headers only gains the new ones
    plain: H = [(b"host", b"svc")]
    p.inject(plain, new)
    assert plain == [(b"host", b"svc"), *new]
