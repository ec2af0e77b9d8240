"""The control channel between the supervisor and a worker: framed msgspec messages.

Each frame is a 4-byte big-endian length and a msgpack-encoded message. The supervisor asks;
the worker answers each request in order. Over a ``socketpair`` created at spawn time.
"""

from __future__ import annotations

import asyncio
import struct

import msgspec

from gateway.telemetry.stats import StatsDump

_LEN = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024


class Apply(msgspec.Struct, tag="apply"):
    snapshot: bytes  # JSON-encoded Snapshot


class Collect(msgspec.Struct, tag="collect"):
    pass


class Drain(msgspec.Struct, tag="drain"):
    deadline_s: float
    exit: bool = True


class Credentials(msgspec.Struct, tag="credentials"):
    """The proxy's identity for mTLS: PEM chain (leaf first), PEM key, PEM trust bundle.
    Sent before the first ``Apply`` and again whenever the material changes; the key only
    crosses the socketpair between the supervisor and its own workers."""

    spiffe_id: str
    chain_pem: bytes
    key_pem: bytes
    bundle_pem: bytes


class Result(msgspec.Struct, tag="result"):
    ok: bool
    error: str = ""


class Collected(msgspec.Struct, tag="collected"):
    stats: StatsDump


Message = Apply | Collect | Drain | Credentials | Result | Collected

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


async def send(writer: asyncio.StreamWriter, msg: Message) -> None:
    body = _encoder.encode(msg)
    writer.write(_LEN.pack(len(body)) + body)
    await writer.drain()


async def receive(reader: asyncio.StreamReader) -> Message | None:
    """The next message, or None at end of stream."""
    try:
        head = await reader.readexactly(_LEN.size)
    except asyncio.IncompleteReadError:
        return None
    (n,) = _LEN.unpack(head)
    if n > MAX_FRAME:
        raise ValueError(f"control frame of {n} bytes")
    try:
        body = await reader.readexactly(n)
    except asyncio.IncompleteReadError:
        return None
    msg: Message = _decoder.decode(body)
    return msg
