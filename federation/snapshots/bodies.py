"""Response bodies of the snapshot server: encoded once, gzipped once, sent in slices.

A mesh-wide snapshot is megabytes of JSON, and every proxy of a shape asks for the same
version at the same moment. :class:`BodyCache` keeps the last few bodies (whole snapshots
and deltas) so that each is encoded once, and gzips each on the first request that accepts
it (JSON of clusters compresses about twentyfold). :func:`reply` sends a large body as
slices of the one shared buffer with the transport's flow control between them, so a
hundred proxies reading a snapshot at once do not each get a private copy of it queued in
the controller's memory.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

GZIP_MIN_BYTES = 32 * 1024  # smaller bodies are sent as they are
SLICE_BYTES = 256 * 1024


class EncodedBody:
    """One body, and its gzip form once a client asked for it."""

    __slots__ = ("_gzip", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._gzip: bytes | None = None

    def gzipped(self) -> bytes:
        if self._gzip is None:
            # Level 1: a tenth of the default's CPU for nearly the same size on this JSON.
            self._gzip = gzip.compress(self.raw, compresslevel=1, mtime=0)
        return self._gzip


class BodyCache:
    """The last ``size`` bodies by key (a version, or a delta's base and version)."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._bodies: dict[str, EncodedBody] = {}

    def get(self, key: str, encode: Callable[[], bytes]) -> EncodedBody:
        found = self._bodies.get(key)
        if found is None:
            found = EncodedBody(encode())
            if len(self._bodies) >= self.size:
                del self._bodies[next(iter(self._bodies))]
            self._bodies[key] = found
        return found


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


async def _slices(data: bytes) -> AsyncIterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), SLICE_BYTES):
        yield view[start : start + SLICE_BYTES]


def reply(request: Request, body: EncodedBody, headers: dict[str, str]) -> Response:
    """``200`` with ``body`` (JSON), gzipped when the client accepts it and it is large."""
    data = body.raw
    headers = {**headers, "vary": "accept-encoding"}
    if len(data) >= GZIP_MIN_BYTES and _accepts_gzip(request):
        data = body.gzipped()
        headers["content-encoding"] = "gzip"
    if len(data) <= SLICE_BYTES:
        return Response(data, media_type="application/json", headers=headers)
    headers["content-length"] = str(len(data))
    return StreamingResponse(_slices(data), media_type="application/json", headers=headers)
