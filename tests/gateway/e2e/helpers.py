"""Helpers shared by the end-to-end tests: config YAML writers, polling, and small clients.

The YAML writers build on ``tests.support.gateway``; the clients here are the ones no
library gives us in the shape a test needs: a raw HTTP/1.1 socket (pipelining, 100-continue,
interleaved streaming) and a minimal HTTP/2 client on the h2 library (interleaved streaming,
GOAWAY observation).
"""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import h2.config
import h2.connection
import h2.events
import trustme

from tests.support.gateway import GatewayProcess, gateway_yaml

T = TypeVar("T")


# -- polling ----------------------------------------------------------------------------------


def wait_until(
    probe: Callable[[], T | None], timeout_s: float = 10.0, interval_s: float = 0.05, what: str = ""
) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or probe}: {last!r}")


# -- configuration ----------------------------------------------------------------------------


def endpoint_service_yaml(
    name: str,
    targets: Iterable[tuple[int, str]],
    *,
    port: int = 80,
    app_protocol: str | None = None,
    annotations: dict[str, str] | None = None,
    namespace: str = "default",
    address: str = "127.0.0.1",
    localities: list[str] | None = None,
) -> str:
    """A Service with one EndpointSlice per ``(target_port, conditions)`` pair.

    Each slice carries its own port number, so several local backends on different ports can
    be the endpoints of one Service. ``conditions`` is a flow-style YAML mapping.
    ``localities`` (``region/zone``, one per pair) puts the region in the slice's
    ``topology.kubernetes.io/region`` label and the zone on the endpoint.
    """
    app = f", appProtocol: {app_protocol}" if app_protocol else ""
    notes = ""
    if annotations:
        notes = ", annotations: {" + ", ".join(f'"{k}": "{v}"' for k, v in annotations.items())
        notes += "}"
    docs = [
        f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}{notes}}}
spec:
  ports: [{{name: http, port: {port}{app}}}]
"""
    ]
    for i, (target, conditions) in enumerate(targets):
        region = zone = ""
        if localities is not None:
            r, _, z = localities[i].partition("/")
            region, zone = f", topology.kubernetes.io/region: {r}", f", zone: {z}"
        docs.append(
            f"""
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-{i}
  namespace: {namespace}
  labels: {{kubernetes.io/service-name: {name}{region}}}
addressType: IPv4
endpoints: [{{addresses: [{address}]{zone}, conditions: {conditions}}}]
ports: [{{name: http, port: {target}{app}}}]
"""
        )
    return "---".join(docs)


def backend_service_yaml(
    name: str, target_port: int, *, port: int = 80, app_protocol: str | None = None
) -> str:
    return endpoint_service_yaml(
        name, [(target_port, "{ready: true}")], port=port, app_protocol=app_protocol
    )


def settings_yaml(**spec: object) -> str:
    body = "\n".join(f"  {key}: {value}" for key, value in spec.items())
    return (
        "apiVersion: isthmus.dev/v1alpha1\nkind: ProxySettings\n"
        f"metadata: {{name: proxy, namespace: default}}\nspec:\n{body}\n"
    )


def tls_secret_yaml(name: str, leaf: trustme.LeafCert, namespace: str = "default") -> str:
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    key = leaf.private_key_pem.bytes()
    return f"""
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: {namespace}}}
type: kubernetes.io/tls
data:
  tls.crt: {base64.b64encode(chain).decode()}
  tls.key: {base64.b64encode(key).decode()}
"""


def https_listener(name: str, port: int, secret: str, hostname: str | None = None) -> str:
    host = f", hostname: {hostname}" if hostname else ""
    return (
        f"  - {{name: {name}, port: {port}, protocol: HTTPS{host}, "
        f"tls: {{mode: Terminate, certificateRefs: [{{name: {secret}}}]}}}}\n"
    )


def http_route_yaml(
    name: str,
    rules: str,
    *,
    hostnames: list[str] | None = None,
    kind: str = "HTTPRoute",
    parent: str = "gw",
) -> str:
    """An HTTPRoute (or GRPCRoute); ``rules`` is the YAML list under ``spec.rules``, indented
    by two spaces."""
    hosts = f"  hostnames: [{', '.join(hostnames)}]\n" if hostnames else ""
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: {kind}
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: {parent}}}]
{hosts}  rules:
{rules}"""


class ConfigDir:
    """A configuration directory that a test writes file by file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, text: str) -> Path:
        target = self.path / name
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(target)  # atomic: the watcher never reads half a file
        return target

    def gateway(self, http_port: int, listeners_extra: str = "") -> Path:
        return self.write("gateway.yaml", gateway_yaml(http_port, listeners_extra=listeners_extra))


def start_gateway(cfg: ConfigDir, **kwargs: object) -> GatewayProcess:
    return GatewayProcess(cfg.path, **kwargs).start()  # type: ignore[arg-type]


# -- curl -------------------------------------------------------------------------------------


def curl(
    *args: str, timeout_s: float = 30.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        ["curl", "-sS", "--max-time", str(int(timeout_s)), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s + 5,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"curl {' '.join(args)} failed ({out.returncode}): {out.stderr}")
    return out


# -- raw HTTP/1.1 -----------------------------------------------------------------------------


def read_until(
    sock: socket.socket | ssl.SSLSocket, marker: bytes, buf: bytearray, timeout_s: float = 10.0
) -> bytes:
    """Bytes up to and including ``marker``, reading into ``buf`` (which keeps the rest)."""
    deadline = time.monotonic() + timeout_s
    while marker not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before {marker!r}; got {bytes(buf)!r}")
        buf += data
    end = buf.index(marker) + len(marker)
    out = bytes(buf[:end])
    del buf[:end]
    return out


def read_exact(
    sock: socket.socket | ssl.SSLSocket, n: int, buf: bytearray, timeout_s: float = 10.0
) -> bytes:
    deadline = time.monotonic() + timeout_s
    while len(buf) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += data
    out = bytes(buf[:n])
    del buf[:n]
    return out


def parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    return status, headers


def read_response(
    sock: socket.socket | ssl.SSLSocket, buf: bytearray, head_only: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (Content-Length or chunked) from a raw socket."""
    status, headers = parse_head(read_until(sock, b"\r\n\r\n", buf))
    if head_only or status in (204, 304) or status < 200:
        return status, headers, b""
    if "content-length" in headers:
        return status, headers, read_exact(sock, int(headers["content-length"]), buf)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int(read_until(sock, b"\r\n", buf)[:-2].split(b";")[0], 16)
            if size == 0:
                read_trailers(sock, buf)
                return status, headers, bytes(body)
            body += read_exact(sock, size, buf)
            read_exact(sock, 2, buf)
    raise AssertionError(f"response without framing: {headers}")


def read_chunk(sock: socket.socket | ssl.SSLSocket, buf: bytearray) -> bytes:
    """One chunk of a chunked body (b"" for the last one)."""
    size = int(read_until(sock, b"\r\n", buf)[:-2].split(b";")[0], 16)
    data = read_exact(sock, size, buf) if size else b""
    if size:
        read_exact(sock, 2, buf)
    return data


def read_trailers(sock: socket.socket | ssl.SSLSocket, buf: bytearray) -> dict[str, str]:
    """The trailer section after the last chunk, up to the final empty line."""
    trailers: dict[str, str] = {}
    while (line := read_until(sock, b"\r\n", buf)) != b"\r\n":
        key, _, value = line.decode("latin-1").partition(":")
        trailers[key.strip().lower()] = value.strip()
    return trailers


def client_tls_context(ca: trustme.CA, alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.set_alpn_protocols(alpn)
    return ctx


def open_socket(
    port: int, *, tls: ssl.SSLContext | None = None, sni: str | None = None, timeout_s: float = 10.0
) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    if tls is not None:
        return tls.wrap_socket(sock, server_hostname=sni)
    return sock


# -- minimal HTTP/2 client --------------------------------------------------------------------


class H2Client:
    """A blocking, minimal HTTP/2 client over a (TLS or plain) socket, for tests that need
    to interleave request and response bodies or watch connection-level frames."""

    def __init__(self, sock: socket.socket, scheme: str = "http") -> None:
        self.sock = sock
        self.scheme = scheme
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.headers: dict[int, dict[str, str]] = {}
        self.trailers: dict[int, dict[str, str]] = {}
        self.data: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.reset: dict[int, int] = {}
        self.closed = False
        self.remote_settings = False
        self.settings_acked = False
        self.flush()

    def settle(self, timeout_s: float = 5.0) -> None:
        """Finish the SETTINGS exchange both ways (our ACK of theirs is sent on return)."""
        self.wait(lambda: self.remote_settings and self.settings_acked, timeout_s)

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self,
        method: str,
        path: str,
        authority: str,
        *,
        body: bytes | None = None,
        end: bool = True,
        headers: list[tuple[str, str]] | None = None,
    ) -> int:
        sid: int = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            sid,
            [
                (":method", method),
                (":path", path),
                (":scheme", self.scheme),
                (":authority", authority),
                *(headers or []),
            ],
            end_stream=end and body is None,
        )
        self.data[sid] = bytearray()
        if body is not None:
            self.send(sid, body, end=end)
        self.flush()
        return sid

    def send(self, sid: int, data: bytes, *, end: bool = False) -> None:
        """Send ``data`` in frames the peer allows, waiting for flow-control credit."""
        view = memoryview(data)
        deadline = time.monotonic() + 30
        while view:
            size = min(
                len(view),
                self.conn.local_flow_control_window(sid),
                self.conn.max_outbound_frame_size,
            )
            if size <= 0:
                if time.monotonic() > deadline:
                    raise AssertionError("no flow-control credit from the peer in 30 s")
                if not self.pump():
                    raise ConnectionError("closed while waiting for flow-control credit")
                continue
            self.conn.send_data(sid, bytes(view[:size]))
            view = view[size:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def end(self, sid: int) -> None:
        self.conn.end_stream(sid)
        self.flush()

    def pump(self, timeout_s: float = 5.0) -> bool:
        """Read once and process the frames; False when the connection closed."""
        self.sock.settimeout(timeout_s)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True  # nothing yet; the caller's deadline decides
        except (ConnectionError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                self.headers[event.stream_id] = dict(event.headers)
            elif isinstance(event, h2.events.TrailersReceived):
                self.trailers[event.stream_id] = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.data.setdefault(event.stream_id, bytearray()).extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.reset[event.stream_id] = event.error_code
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event
                if not event.error_code:
                    # h2 closes its state machine on any GOAWAY; a graceful one still lets
                    # streams up to last_stream_id finish (RFC 9113 6.8), as real clients do.
                    self.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                self.remote_settings = True
            elif isinstance(event, h2.events.SettingsAcknowledged):
                self.settings_acked = True
        self.flush()
        return True

    def wait(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting on the HTTP/2 connection")
            if not self.pump(max(0.01, deadline - time.monotonic())):
                if predicate():
                    return
                raise ConnectionError("HTTP/2 connection closed")

    def response(self, sid: int, timeout_s: float = 10.0) -> tuple[int, bytes]:
        self.wait(lambda: sid in self.ended, timeout_s)
        return int(self.headers.get(sid, {}).get(":status", "0")), bytes(self.data[sid])

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self.flush()
        except Exception:
            pass
        self.sock.close()
