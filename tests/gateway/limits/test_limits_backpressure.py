"""Memory stays bounded when one side is slow (DESIGN.md §4 "Overload", §4 "Streaming").

Slow reader: a client asks for a 200 MB response and reads nothing. The backend must stall
(its writes block, it cannot push the whole body), and the gateway worker's memory must grow by
far less than the body. Slow upstream: a client uploads a large body to a backend that reads
nothing; the client's sends must stall and the worker's memory stay bounded. Both over
HTTP/1.1 and HTTP/2. Afterwards the flow resumes (or is torn down cleanly) and a fresh
connection is served.

"Stalled" is measured, not slept: a polling loop with a deadline waits until a byte counter
has not moved for a full second.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h2.events
import pytest
from limits_support import (
    Backend,
    Gateway,
    H2Session,
    Reader,
    assert_fresh_connection_works,
    connect,
    h2_request_headers,
    run_gateway,
)

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024
RSS_BUDGET = 40 * MIB
QUIET_S = 1.0


@pytest.fixture(scope="module")
def gw(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    if not Path("/proc/self/status").exists():
        pytest.fail("these tests read the worker's memory from /proc")
    with run_gateway(tmp_path_factory.mktemp("backpressure"), backend) as g:
        yield g


def _wait_stalled(
    counter: Callable[[], int], timeout: float = 20.0, poke: Callable[[], None] | None = None
) -> int:
    """Wait until ``counter()`` has not changed for QUIET_S; return its value."""
    deadline = time.monotonic() + timeout
    last, since = counter(), time.monotonic()
    while True:
        if poke is not None:
            poke()
        time.sleep(0.05)
        now = time.monotonic()
        value = counter()
        if value != last:
            last, since = value, now
        elif now - since >= QUIET_S:
            return value
        if now > deadline:
            raise AssertionError(f"never stalled; still moving at {value}")


class Memory:
    """The worker's RSS and peak RSS, from a baseline taken at construction."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.rss0 = gw.worker_vm("VmRSS")
        self.hwm0 = gw.worker_vm("VmHWM")

    def assert_bounded(self, what: str) -> None:
        rss = self.gw.worker_vm("VmRSS") - self.rss0
        peak = self.gw.worker_vm("VmHWM") - max(self.hwm0, self.rss0)
        assert rss < RSS_BUDGET, f"{what}: worker RSS grew by {rss / MIB:.1f} MiB"
        assert peak < RSS_BUDGET, f"{what}: worker peak RSS grew by {peak / MIB:.1f} MiB"


# -- slow reader -----------------------------------------------------------------------------------


def test_slow_h1_reader_stalls_the_backend(gw: Gateway) -> None:
    total_mb = 200
    st = gw.backend.stream("h1-slow-reader")
    mem = Memory(gw)
    sock = connect(gw.port, rcvbuf=64 * 1024)
    sock.sendall(f"GET /big/h1-slow-reader?mb={total_mb} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    assert st.started.wait(5)

    stalled = _wait_stalled(lambda: st.bytes)
    assert not st.finished
    assert stalled < 64 * MIB, f"backend pushed {stalled / MIB:.0f} MiB into a client reading 0"
    mem.assert_bounded("HTTP/1.1 slow reader")

    # The stall is backpressure, not a dead stream: reading lets the backend go on.
    sock.settimeout(5)
    deadline = time.monotonic() + 10
    while st.bytes <= stalled:
        assert time.monotonic() < deadline, "the backend did not resume after the client read"
        assert sock.recv(1 << 20), "the response ended early"

    # Hanging up tears the upstream side down too.
    sock.close()
    assert st.done.wait(10), "the backend kept its response open after the client left"
    assert st.error is not None and not st.finished
    assert_fresh_connection_works(gw, "h1-slow-reader")


def test_slow_h2_reader_stalls_the_backend(gw: Gateway) -> None:
    st = gw.backend.stream("h2-slow-reader")
    mem = Memory(gw)
    s = H2Session(gw.port)
    s.auto_ack = False  # a reader that never gives window back
    sid = s.conn.get_next_available_stream_id()
    s.conn.send_headers(sid, h2_request_headers("/big/h2-slow-reader?mb=200"), end_stream=True)
    s.flush()
    assert st.started.wait(5)

    def received() -> int:
        return sum(
            e.flow_controlled_length
            for e in s.events
            if isinstance(e, h2.events.DataReceived) and e.stream_id == sid
        )

    def pump() -> None:
        s.sock.settimeout(0.01)
        try:
            s.pump()
        except TimeoutError:
            pass

    stalled = _wait_stalled(lambda: st.bytes, poke=pump)
    assert not st.finished
    assert stalled < 64 * MIB, f"backend pushed {stalled / MIB:.0f} MiB into a client reading 0"
    assert received() <= 65535, "the proxy sent more DATA than the client's window"
    mem.assert_bounded("HTTP/2 slow reader")

    # Window given back: more DATA flows and the backend goes on.
    before = received()
    s.conn.acknowledge_received_data(before, sid)
    s.conn.increment_flow_control_window(8 * MIB, sid)
    s.conn.increment_flow_control_window(8 * MIB)
    s.flush()
    s.auto_ack = True
    deadline = time.monotonic() + 10
    while received() <= before + 4 * MIB or st.bytes <= stalled:
        assert time.monotonic() < deadline, "no DATA or no backend progress after window opened"
        pump()

    s.conn.reset_stream(sid)
    s.flush()
    assert st.done.wait(10), "the backend kept its response open after RST_STREAM"
    assert st.error is not None and not st.finished
    s.close()
    assert_fresh_connection_works(gw, "h2-slow-reader")


# -- slow upstream, fast uploader ----------------------------------------------------------------


def test_h1_upload_to_slow_backend_is_flow_controlled(gw: Gateway) -> None:
    total = 128 * MIB
    st = gw.backend.stream("h1-upload")
    mem = Memory(gw)
    sock = connect(gw.port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sock.sendall(f"POST /upload/h1-upload HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n"
                 .encode())  # fmt: skip
    assert st.started.wait(5)

    chunk = b"u" * (256 * 1024)
    sent = 0
    sock.setblocking(False)
    quiet_since = time.monotonic()
    deadline = quiet_since + 20
    while sent < total:
        _, writable, _ = select.select([], [sock], [], 0.1)
        now = time.monotonic()
        if writable:
            try:
                n = sock.send(chunk[: min(len(chunk), total - sent)])
            except BlockingIOError:
                n = 0
            if n:
                sent += n
                quiet_since = now
                continue
        if now - quiet_since >= QUIET_S:
            break
        assert now < deadline, "the upload never stalled"
    assert sent < total, "the proxy took the whole upload while the backend read nothing"
    assert st.bytes == 0
    mem.assert_bounded("HTTP/1.1 upload")

    # The backend starts reading: the rest of the upload goes through, intact in length.
    st.release.set()
    sock.setblocking(True)
    sock.settimeout(20)
    while sent < total:
        sent += sock.send(chunk[: min(len(chunk), total - sent)])
    resp = Reader(sock).response()
    assert (resp.status, resp.body) == (200, str(total).encode())
    sock.close()
    assert st.finished and st.bytes == total
    assert_fresh_connection_works(gw, "h1-upload")


def test_h2_upload_to_slow_backend_is_flow_controlled(gw: Gateway) -> None:
    total = 96 * MIB
    st = gw.backend.stream("h2-upload")
    mem = Memory(gw)
    s = H2Session(gw.port)
    s.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
    sid = s.conn.get_next_available_stream_id()
    headers = h2_request_headers("/upload/h2-upload", "POST", [(b"content-length", b"%d" % total)])
    s.conn.send_headers(sid, headers)
    s.flush()
    assert st.started.wait(5)

    block = b"u" * 16384
    sent = 0

    def push(limit: float) -> None:
        """Send what the windows allow, reading WINDOW_UPDATEs, for up to ``limit`` seconds
        or until the windows stay shut for QUIET_S."""
        nonlocal sent
        end = time.monotonic() + limit
        shut_since: float | None = None
        while sent < total and time.monotonic() < end:
            window = min(s.conn.local_flow_control_window(sid), total - sent)
            if window > 0:
                shut_since = None
                while window > 0:
                    n = min(window, len(block))
                    s.conn.send_data(sid, block[:n], end_stream=sent + n == total)
                    sent += n
                    window -= n
                s.flush()
            elif shut_since is None:
                shut_since = time.monotonic()
            elif time.monotonic() - shut_since >= QUIET_S:
                return
            s.sock.settimeout(0.05)
            try:
                s.pump()
            except TimeoutError:
                pass

    push(20)
    assert sent < total, "the proxy kept opening the window while the backend read nothing"
    assert s.conn.local_flow_control_window(sid) == 0 or s.conn.outbound_flow_control_window == 0
    assert st.bytes == 0
    mem.assert_bounded("HTTP/2 upload")

    st.release.set()
    push(30)
    assert sent == total, f"the upload stalled at {sent} after the backend started reading"
    status, body = s.response(sid, timeout=20)
    assert (status, body) == (200, str(total).encode())
    s.close()
    assert st.finished and st.bytes == total
    assert_fresh_connection_works(gw, "h2-upload")
