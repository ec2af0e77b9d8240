"""Trace-context propagation: W3C ``traceparent``/``tracestate`` and B3, parsed and written.

Sans-IO and free of OpenTelemetry: bytes in, a :class:`TraceContext` out, and header pairs
back. ``gateway.telemetry.tracing`` calls :func:`extract` once per request and
:func:`outgoing` plus :func:`inject` once per upstream try.

Parsing is strict, and whatever fails to parse is ignored as if it were absent (a new trace
starts, or the next form in preference order is used):

- ``traceparent`` (W3C Trace Context level 1): ``version-traceid-parentid-flags`` in lower-case
  hex. Version ``ff`` is invalid. Version ``00`` must be exactly 55 characters. A later version
  is read by its first four fields as long as they are followed by the end or by ``-``. Ids
  must not be all zeros; only the ``sampled`` flag bit is used. Several ``traceparent``
  fields are invalid. ``tracestate`` is read only together with a valid ``traceparent``:
  several fields are joined, each member must follow the spec's key and value grammar, keys
  must be unique and there may be at most 32 members; otherwise it is dropped whole.
- ``b3`` (single header): ``{traceid}-{spanid}[-{sampled}[-{parentspanid}]]`` with a 64- or
  128-bit trace id, ``sampled`` one of ``0``, ``1``, ``d`` (debug, which implies sampled); or
  a decision alone: ``0`` (deny), ``1``, ``d``.
- ``X-B3-*`` (multi header): ``TraceId`` (64 or 128 bit), ``SpanId``, ``ParentSpanId``,
  ``Sampled`` (``1``/``0``, also the legacy ``true``/``false``) and ``Flags`` (``1`` is debug).
  ``Sampled`` or ``Flags`` may come alone, as a decision without ids.
  B3 hex must be lower-case as well. A field that occurs twice makes its form invalid.

Preference when several forms are present: ``traceparent``, then ``b3``, then ``X-B3-*``;
the first valid one wins.

What is written upstream (:func:`outgoing`): always ``traceparent`` (and the incoming
``tracestate``, passed through unchanged, when the context came from ``traceparent``), plus
each B3 form the request carried, valid or not, so that a B3-only service behind the proxy
keeps working. A request that carried no trace header at all gets ``traceparent`` and ``b3``
(single): the two forms that current tracers read. :func:`inject` first removes every trace
header from the upstream request, so stale values never reach the backend.

B3 trace ids are written with 16 hex digits when they fit in 64 bits (as a 64-bit B3 trace
id came in) and with 32 otherwise; ``traceparent`` always has 32.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]

# Header forms, as bit flags (plain ints: cheaper than enum.Flag on the hot path).
W3C = 1
B3_SINGLE = 2
B3_MULTI = 4

TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"
B3 = b"b3"
X_B3_TRACEID = b"x-b3-traceid"
X_B3_SPANID = b"x-b3-spanid"
X_B3_PARENTSPANID = b"x-b3-parentspanid"
X_B3_SAMPLED = b"x-b3-sampled"
X_B3_FLAGS = b"x-b3-flags"
_X_B3 = frozenset({X_B3_TRACEID, X_B3_SPANID, X_B3_PARENTSPANID, X_B3_SAMPLED, X_B3_FLAGS})
TRACE_HEADERS: frozenset[bytes] = frozenset({TRACEPARENT, TRACESTATE, B3}) | _X_B3

_OWS = b" \t"
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_TRACESTATE_MEMBER = re.compile(
    rb"([a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
    rb"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
_TRACESTATE_MAX_MEMBERS = 32
_B3_SINGLE = re.compile(
    rb"([0-9a-f]{32}|[0-9a-f]{16})-([0-9a-f]{16})(?:-([01d])(?:-([0-9a-f]{16}))?)?"
)
_HEX16 = re.compile(rb"[0-9a-f]{16}")
_HEX16_OR_32 = re.compile(rb"[0-9a-f]{32}|[0-9a-f]{16}")
_B3_SAMPLED = {b"1": True, b"0": False, b"true": True, b"false": False}


@dataclass(frozen=True, slots=True)
class TraceContext:
    """What a request carried.

    ``trace_id`` and ``span_id`` are 0 when no valid ids came (the span id is the caller's
    span, the parent of the proxy's server span). ``sampled`` is the caller's decision, or
    ``None`` when it left it to the proxy (B3 ids without a decision, or nothing at all).
    ``debug`` is B3's debug flag. ``tracestate`` is the validated, normalised W3C
    ``tracestate``. ``formats`` are the header forms present (:data:`W3C`, :data:`B3_SINGLE`,
    :data:`B3_MULTI`), valid or not.
    """

    trace_id: int = 0
    span_id: int = 0
    sampled: bool | None = None
    debug: bool = False
    tracestate: bytes | None = None
    formats: int = 0

    @property
    def has_ids(self) -> bool:
        return self.trace_id != 0


EMPTY = TraceContext()

# (trace_id, span_id, sampled, debug) as parsed, before the context is assembled.
_Parsed = tuple[int, int, bool | None, bool]


def _traceparent(value: bytes) -> _Parsed | None:
    value = value.strip(_OWS)
    m = _TRACEPARENT.match(value)
    if m is None:
        return None
    version = m.group(1)
    if version == b"ff":
        return None
    if version == b"00":
        if len(value) != 55:
            return None
    elif len(value) > 55 and value[55] != 0x2D:  # a later version: more fields after "-"
        return None
    trace_id = int(m.group(2), 16)
    span_id = int(m.group(3), 16)
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id, bool(int(m.group(4), 16) & 1), False


def _tracestate(values: Sequence[bytes]) -> bytes | None:
    members: list[bytes] = []
    keys: set[bytes] = set()
    for value in values:
        for raw in value.split(b","):
            member = raw.strip(_OWS)
            if not member:
                continue  # empty list members are allowed and dropped
            m = _TRACESTATE_MEMBER.fullmatch(member)
            if m is None:
                return None
            key = m.group(1)
            if key in keys:
                return None
            keys.add(key)
            members.append(member)
    if not members or len(members) > _TRACESTATE_MAX_MEMBERS:
        return None
    return b",".join(members)


def _b3_single(value: bytes) -> _Parsed | None:
    value = value.strip(_OWS)
    if len(value) == 1:  # a decision alone
        if value == b"0":
            return 0, 0, False, False
        if value == b"1":
            return 0, 0, True, False
        if value == b"d":
            return 0, 0, True, True
        return None
    m = _B3_SINGLE.fullmatch(value)
    if m is None:
        return None
    trace_id = int(m.group(1), 16)
    span_id = int(m.group(2), 16)
    parent = m.group(4)
    if trace_id == 0 or span_id == 0 or (parent is not None and int(parent, 16) == 0):
        return None
    state = m.group(3)
    if state is None:
        return trace_id, span_id, None, False
    return trace_id, span_id, state != b"0", state == b"d"


def _b3_multi(
    trace_id_v: bytes | None,
    span_id_v: bytes | None,
    parent_v: bytes | None,
    sampled_v: bytes | None,
    flags_v: bytes | None,
) -> _Parsed | None:
    sampled: bool | None = None
    debug = False
    if flags_v is not None:
        flags_v = flags_v.strip(_OWS)
        if flags_v == b"1":
            debug = True
        elif flags_v != b"0":
            return None
    if sampled_v is not None:
        found = _B3_SAMPLED.get(sampled_v.strip(_OWS).lower())
        if found is None:
            return None
        sampled = found
    if debug:
        sampled = True
    if trace_id_v is None:
        if span_id_v is not None or parent_v is not None or sampled is None:
            return None
        return 0, 0, sampled, debug
    if span_id_v is None:
        return None
    trace_id_v = trace_id_v.strip(_OWS)
    span_id_v = span_id_v.strip(_OWS)
    if _HEX16_OR_32.fullmatch(trace_id_v) is None or _HEX16.fullmatch(span_id_v) is None:
        return None
    trace_id = int(trace_id_v, 16)
    span_id = int(span_id_v, 16)
    if trace_id == 0 or span_id == 0:
        return None
    if parent_v is not None:
        parent_v = parent_v.strip(_OWS)
        if _HEX16.fullmatch(parent_v) is None or int(parent_v, 16) == 0:
            return None
    return trace_id, span_id, sampled, debug


def parse_traceparent(value: bytes, tracestate: Sequence[bytes] = ()) -> TraceContext | None:
    """One ``traceparent`` value (and the ``tracestate`` values), or None when invalid."""
    parsed = _traceparent(value)
    if parsed is None:
        return None
    return TraceContext(*parsed, tracestate=_tracestate(tracestate), formats=W3C)


def parse_tracestate(values: Sequence[bytes]) -> bytes | None:
    """The ``tracestate`` fields joined and normalised, or None when absent or invalid."""
    return _tracestate(values)


def parse_b3(value: bytes) -> TraceContext | None:
    """One ``b3`` value, or None when invalid."""
    parsed = _b3_single(value)
    return None if parsed is None else TraceContext(*parsed, formats=B3_SINGLE)


def parse_b3_multi(
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    parent_span_id: bytes | None = None,
    sampled: bytes | None = None,
    flags: bytes | None = None,
) -> TraceContext | None:
    """The ``X-B3-*`` values (None when absent), or None when invalid."""
    parsed = _b3_multi(trace_id, span_id, parent_span_id, sampled, flags)
    return None if parsed is None else TraceContext(*parsed, formats=B3_MULTI)


def extract(headers: Headers) -> TraceContext:
    """The trace context of a request, from its (lower-case) header list.

    Returns :data:`EMPTY` when the request carries no trace header, and a context without
    ids (but with its ``formats``) when none of the forms present is valid.
    """
    traceparent: bytes | None = None
    tracestate: list[bytes] | None = None
    b3: bytes | None = None
    multi: dict[bytes, bytes] | None = None
    formats = 0
    broken = 0  # forms with a repeated field
    for name, value in headers:
        if name not in TRACE_HEADERS:
            continue
        if name == TRACEPARENT:
            if formats & W3C:
                broken |= W3C
            formats |= W3C
            traceparent = value
        elif name == TRACESTATE:
            if tracestate is None:
                tracestate = []
            tracestate.append(value)
        elif name == B3:
            if formats & B3_SINGLE:
                broken |= B3_SINGLE
            formats |= B3_SINGLE
            b3 = value
        else:
            formats |= B3_MULTI
            if multi is None:
                multi = {}
            elif name in multi:
                broken |= B3_MULTI
            multi[name] = value
    if formats == 0:
        return EMPTY
    parsed: _Parsed | None = None
    state: bytes | None = None
    if traceparent is not None and not broken & W3C:
        parsed = _traceparent(traceparent)
        if parsed is not None and tracestate is not None:
            state = _tracestate(tracestate)
    if parsed is None and b3 is not None and not broken & B3_SINGLE:
        parsed = _b3_single(b3)
    if parsed is None and multi is not None and not broken & B3_MULTI:
        parsed = _b3_multi(
            multi.get(X_B3_TRACEID),
            multi.get(X_B3_SPANID),
            multi.get(X_B3_PARENTSPANID),
            multi.get(X_B3_SAMPLED),
            multi.get(X_B3_FLAGS),
        )
    if parsed is None:
        return TraceContext(formats=formats)
    trace_id, span_id, sampled, debug = parsed
    return TraceContext(trace_id, span_id, sampled, debug, state, formats)


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> bytes:
    return b"00-%032x-%016x-%s" % (trace_id, span_id, b"01" if sampled else b"00")


def _b3_trace_id(trace_id: int) -> bytes:
    return b"%016x" % trace_id if trace_id < 1 << 64 else b"%032x" % trace_id


def format_b3(
    trace_id: int, span_id: int, sampled: bool, debug: bool, parent_span_id: int
) -> bytes:
    """A ``b3`` single-header value; ``parent_span_id`` 0 leaves the parent out."""
    state = b"d" if debug else b"1" if sampled else b"0"
    value = b"%s-%016x-%s" % (_b3_trace_id(trace_id), span_id, state)
    return value + b"-%016x" % parent_span_id if parent_span_id else value


def outgoing(
    formats: int,
    trace_id: int,
    span_id: int,
    sampled: bool,
    *,
    debug: bool = False,
    parent_span_id: int = 0,
    tracestate: bytes | None = None,
) -> Headers:
    """The trace headers for an upstream request whose parent span is ``span_id``.

    ``formats`` are the forms the downstream request carried (see the module docstring for
    what is written); ``parent_span_id`` is the parent of ``span_id`` (0: none), for B3.
    """
    out: Headers = [(TRACEPARENT, format_traceparent(trace_id, span_id, sampled))]
    if tracestate is not None:
        out.append((TRACESTATE, tracestate))
    if formats & B3_SINGLE or not formats:
        out.append((B3, format_b3(trace_id, span_id, sampled, debug, parent_span_id)))
    if formats & B3_MULTI:
        out.append((X_B3_TRACEID, _b3_trace_id(trace_id)))
        out.append((X_B3_SPANID, b"%016x" % span_id))
        if parent_span_id:
            out.append((X_B3_PARENTSPANID, b"%016x" % parent_span_id))
        if debug:  # debug implies sampled; B3 says not to send both
            out.append((X_B3_FLAGS, b"1"))
        else:
            out.append((X_B3_SAMPLED, b"1" if sampled else b"0"))
    return out


def inject(headers: Headers, trace_headers: Headers) -> None:
    """Replace, in place, every trace header of ``headers`` with ``trace_headers``."""
    for name, _ in headers:
        if name in TRACE_HEADERS:
            headers[:] = [h for h in headers if h[0] not in TRACE_HEADERS]
            break
    headers.extend(trace_headers)
