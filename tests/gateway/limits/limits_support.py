"""Helpers for the limits tests: a counting HTTP/1.1 backend, raw-socket HTTP/1.1 and HTTP/2
clients, and a probe of the gateway worker's memory.

Nothing here waits blindly: every read blocks on a socket with a timeout, and every "has it
happened yet" check is a polling loop with a deadline.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
from hyperframe.frame import Frame

from tests.support.gateway import GatewayProcess, free_port, write_basic_config

# --------------------------------------------------------------------------------------------
# backend
# --------------------------------------------------------------------------------------------

CHUNK = 64 * 1024


@dataclass
class Stream:
    """Progress of one long backend response (``/big``) or slow upload (``/upload``)."""

    bytes: int = 0
    finished: bool = False
    error: str | None = None
    started: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class Backend:
    """A threaded HTTP/1.1 origin.

    * every request: ``heads[path]`` counts request heads seen, ``complete[path]`` counts
      requests whose body (Content-Length or chunked) was read to its end;
    * ``/echo...``: answers 200 with the request body;
    * ``/big/<key>?mb=N``: streams N MiB (Content-Length set), recording progress in
      ``streams[key]``; the write blocks when the proxy stops reading;
    * ``/upload/<key>``: reads nothing of the body until ``streams[key].release`` is set, then
      reads it all and answers with its length;
    * anything else: 200 ``ok <path>``.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.heads: Counter[str] = Counter()
        self.complete: Counter[str] = Counter()
        self.streams: dict[str, Stream] = {}
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                backend._handle(self)

            do_POST = do_PUT = do_HEAD = do_DELETE = do_GET

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request: Any, client_address: Any) -> None:
                # The proxy resets upstream connections on purpose in these tests.
                if not isinstance(sys.exc_info()[1], OSError):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Backend:
        self._thread.start()
        return self

    def stop(self) -> None:
        for s in list(self.streams.values()):
            s.release.set()
        self.server.shutdown()
        self.server.server_close()

    def stream(self, key: str) -> Stream:
        with self.lock:
            return self.streams.setdefault(key, Stream())

    def total_heads(self) -> int:
        with self.lock:
            return sum(self.heads.values())

    # -- request handling -----------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        with self.lock:
            self.heads[path] += 1
        if path.startswith("/big/"):
            self._big(h, path)
            return
        if path.startswith("/upload/"):
            self._upload(h, path)
            return
        try:
            body = _read_body(h)
        except (OSError, ValueError):
            h.close_connection = True
            return
        with self.lock:
            self.complete[path] += 1
        out = body if path.startswith("/echo") else f"ok {path}".encode()
        h.send_response(200)
        h.send_header("content-type", "text/plain")
        h.send_header("content-length", str(len(out)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(out)

    def _big(self, h: BaseHTTPRequestHandler, path: str) -> None:
        query = h.path.split("?", 1)[1] if "?" in h.path else ""
        mb = int(dict(p.split("=") for p in query.split("&") if "=" in p).get("mb", "200"))
        total = mb * 1024 * 1024
        st = self.stream(path.removeprefix("/big/"))
        st.started.set()
        chunk = b"x" * CHUNK
        try:
            h.send_response(200)
            h.send_header("content-type", "application/octet-stream")
            h.send_header("content-length", str(total))
            h.end_headers()
            while st.bytes < total:
                h.wfile.write(chunk)
                st.bytes += CHUNK
            st.finished = True
        except OSError as exc:
            st.error = repr(exc)
            h.close_connection = True
        finally:
            st.done.set()

    def _upload(self, h: BaseHTTPRequestHandler, path: str) -> None:
        st = self.stream(path.removeprefix("/upload/"))
        st.started.set()
        try:
            if not st.release.wait(60):
                raise TimeoutError("never released")
            remaining = int(h.headers["content-length"])
            while remaining:
                data = h.rfile.read1(min(remaining, CHUNK))  # type: ignore[attr-defined]
                if not data:
                    raise ConnectionError("upload ended early")
                remaining -= len(data)
                st.bytes += len(data)
            st.finished = True
            out = str(st.bytes).encode()
            h.send_response(200)
            h.send_header("content-length", str(len(out)))
            h.end_headers()
            h.wfile.write(out)
        except (OSError, ValueError) as exc:
            st.error = repr(exc)
            h.close_connection = True
        finally:
            st.done.set()


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    te = h.headers.get("transfer-encoding")
    if te is not None:
        if te.strip().lower() != "chunked":
            raise ValueError(f"backend got transfer-encoding {te!r}")
        out = bytearray()
        while True:
            line = h.rfile.readline(1024)
            if not line.endswith(b"\r\n"):
                raise ValueError("truncated chunk size")
            size = int(line.split(b";", 1)[0], 16)
            if size == 0:
                while h.rfile.readline(1024) not in (b"\r\n", b""):
                    pass
                return bytes(out)
            data = h.rfile.read(size + 2)
            if len(data) != size + 2:
                raise ValueError("truncated chunk")
            out += data[:-2]
    n = int(h.headers.get("content-length") or 0)
    data = h.rfile.read(n) if n else b""
    if len(data) != n:
        raise ValueError("truncated body")
    return data


# --------------------------------------------------------------------------------------------
# gateway
# --------------------------------------------------------------------------------------------


@dataclass
class Gateway:
    proc: GatewayProcess
    port: int
    backend: Backend

    def rejections(self) -> dict[str, float]:
        """``isthmus_downstream_rejections_total`` by reason."""
        out: dict[str, float] = {}
        for line in self.proc.metrics().splitlines():
            if line.startswith("isthmus_downstream_rejections_total{"):
                labels, value = line.rsplit(" ", 1)
                reason = labels.split('reason="', 1)[1].rsplit('"', 1)[0]
                out[reason] = float(value)
        return out

    def worker_pid(self) -> int:
        assert self.proc.proc is not None
        parent = self.proc.proc.pid
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent and b"gateway.process.worker" in cmd:
                return int(entry.name)
        raise AssertionError(f"no worker process under gateway pid {parent}")

    def worker_vm(self, field: str) -> int:
        """A ``Vm*`` line of the worker's /proc status (VmRSS, VmHWM), in bytes."""
        for line in Path(f"/proc/{self.worker_pid()}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in the worker's status")


@contextmanager
def run_gateway(tmp: Path, backend: Backend, settings: str = "") -> Iterator[Gateway]:
    port = free_port()
    write_basic_config(tmp / "config", port, backend.port, settings=settings)
    proc = GatewayProcess(tmp / "config").start()
    gw = Gateway(proc, port, backend)
    try:
        # The admin port answers before every listener may be up: wait for the data port.
        wait_until(lambda: get_ok(gw, "/warmup"), 10, "listener serving")
        yield gw
    finally:
        proc.stop()


def wait_until(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = cond()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# raw HTTP/1.1
# --------------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


def connect(port: int, timeout: float = 5.0, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


class Reader:
    """Reads HTTP/1.1 responses off a blocking socket (its timeout bounds every wait)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _more(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def response(self) -> Response:
        while b"\r\n\r\n" not in self.buf:
            if not self._more():
                raise ConnectionError(f"EOF before a response head; got {self.buf!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = [(k.strip(), v.strip()) for k, v in (ln.split(":", 1) for ln in lines[1:])]
        resp = Response(status, headers, b"")
        te = resp.header("transfer-encoding")
        cl = resp.header("content-length")
        if te is not None and "chunked" in te.lower():
            resp.body = self._chunked()
        elif cl is not None:
            n = int(cl)
            while len(self.buf) < n:
                if not self._more():
                    raise ConnectionError("EOF inside a response body")
            resp.body, self.buf = self.buf[:n], self.buf[n:]
        elif status >= 200 and status not in (204, 304):
            while self._more():
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def _chunked(self) -> bytes:
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                if not self._more():
                    raise ConnectionError("EOF inside a chunked body")
            line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while b"\r\n\r\n" not in b"\r\n" + self.buf:
                    if not self._more():
                        raise ConnectionError("EOF in trailers")
                self.buf = (b"\r\n" + self.buf).split(b"\r\n\r\n", 1)[1]
                return out
            while len(self.buf) < size + 2:
                if not self._more():
                    raise ConnectionError("EOF inside a chunk")
            out += self.buf[:size]
            self.buf = self.buf[size + 2 :]

    def closed(self) -> bool:
        """True when the peer closes (EOF or reset) before the socket timeout; extra bytes fail."""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                raise AssertionError(f"unexpected bytes after the response: {data[:200]!r}")
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False


def exchange(port: int, raw: bytes, timeout: float = 5.0) -> tuple[Response, Reader]:
    sock = connect(port, timeout)
    sock.sendall(raw)
    reader = Reader(sock)
    return reader.response(), reader


def get_ok(gw: Gateway, path: str) -> bool:
    """One GET on a fresh connection; True when it came back 200 from the backend."""
    resp, reader = exchange(gw.port, f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    reader.sock.close()
    return resp.status == 200 and resp.body == f"ok {path}".encode()


def assert_fresh_connection_works(gw: Gateway, tag: str) -> None:
    """The check every rejection test ends with: a new connection gets a normal 200."""
    path = f"/after/{tag}/{time.monotonic_ns()}"
    resp, reader = exchange(gw.port, f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    reader.sock.close()
    assert resp.status == 200, resp
    assert resp.body == f"ok {path}".encode()
    assert gw.backend.complete[path] == 1


# --------------------------------------------------------------------------------------------
# raw HTTP/2
# --------------------------------------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_client(**overrides: Any) -> h2.connection.H2Connection:
    """An h2 client that lets the test send what a well-behaved client would not."""
    cfg = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        **overrides,
    )
    conn = h2.connection.H2Connection(config=cfg)
    conn.initiate_connection()
    return conn


def h2_request_headers(
    path: str, method: str = "GET", extra: list[tuple[bytes, bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method.encode()),
        (b":scheme", b"http"),
        (b":authority", b"test"),
        (b":path", path.encode()),
        *(extra or []),
    ]


class H2Session:
    """An h2 client connection over a blocking socket, collecting events."""

    def __init__(self, port: int, timeout: float = 5.0, **overrides: Any) -> None:
        self.sock = connect(port, timeout)
        self.conn = h2_client(**overrides)
        self.events: list[h2.events.Event] = []
        self.eof = False
        # Give received DATA's window back, as a reading client does; off for a slow reader.
        self.auto_ack = True
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self) -> bool:
        """Read once; False on EOF/reset."""
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        events = self.conn.receive_data(data)
        for ev in events:
            if isinstance(ev, h2.events.DataReceived) and self.auto_ack:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        self.events.extend(events)
        self.flush()
        return True

    def until(
        self, pred: Callable[[h2.events.Event], bool], timeout: float = 5.0
    ) -> h2.events.Event:
        """Read until an event matches ``pred``; fail on EOF or when ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for ev in self.events[seen:]:
                if pred(ev):
                    return ev
            seen = len(self.events)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching event in {timeout}s; events: {self.events}")
            self.sock.settimeout(remaining)
            try:
                if not self.pump():
                    raise AssertionError(f"EOF before a matching event; events: {self.events}")
            except TimeoutError:
                continue

    def response(self, sid: int, timeout: float = 5.0) -> tuple[int, bytes]:
        """Wait for stream ``sid`` to end; return status and body (acknowledging DATA)."""
        self.until(
            lambda e: (
                isinstance(e, h2.events.StreamEnded | h2.events.StreamReset) and e.stream_id == sid
            ),
            timeout,
        )
        status = 0
        body = b""
        for ev in self.events:
            if getattr(ev, "stream_id", None) != sid:
                continue
            if isinstance(ev, h2.events.StreamReset):
                raise AssertionError(f"stream {sid} reset with {ev.error_code!r}")
            if isinstance(ev, h2.events.ResponseReceived):
                status = int(dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.DataReceived):
                body += ev.data
        return status, body

    def get(self, path: str, extra: list[tuple[bytes, bytes]] | None = None) -> tuple[int, bytes]:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, h2_request_headers(path, "GET", extra), end_stream=True)
        self.flush()
        return self.response(sid)

    def close(self) -> None:
        self.sock.close()


class FrameReader:
    """Raw HTTP/2 frames off a socket, for attacks the h2 client state machine cannot follow."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def next(self, timeout: float) -> Frame | None:
        """The next frame, or None at EOF/reset. Raises TimeoutError when nothing comes."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) >= 9 + length:
                    frame.parse_body(memoryview(self.buf[9 : 9 + length]))
                    self.buf = self.buf[9 + length :]
                    return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                return None
            self.buf += data

    def until(
        self, pred: Callable[[Frame], bool], timeout: float = 5.0
    ) -> tuple[Frame, list[Frame]]:
        """Frames until one matches; returns it and everything before it."""
        seen: list[Frame] = []
        deadline = time.monotonic() + timeout
        while True:
            frame = self.next(max(0.0, deadline - time.monotonic()))
            if frame is None:
                raise AssertionError(f"EOF before a matching frame; got {seen}")
            if pred(frame):
                return frame, seen
            seen.append(frame)

    def closed(self, timeout: float = 3.0) -> bool:
        """True when the connection ends within ``timeout`` (frames before it are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.next(max(0.0, deadline - time.monotonic())) is None:
                    return True
            except TimeoutError:
                return False
