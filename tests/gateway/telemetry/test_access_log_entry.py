"""The access-log record: its JSON shape, its start time and its response flags."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.telemetry.access_flags import ENVOY_FLAGS, join_flags
from gateway.telemetry.access_log import AccessLogEntry, AccessLogger, format_start_time

KEYS = [
    "start_time", "route_name", "method", "path", "protocol", "response_code",
    "response_flags", "bytes_received", "bytes_sent", "duration", "x_forwarded_for",
    "user_agent", "request_id", "authority", "upstream_host", "upstream_cluster",
    "downstream_local_address", "downstream_remote_address", "requested_server_name",
    "upstream_request_attempt_count", "trace_id", "downstream_peer_principal",
]  # fmt: skip


class ListSink:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def lines(self) -> list[dict[str, object]]:
        text = b"".join(self.chunks).decode()
        assert text.endswith("\n")
        return [json.loads(line) for line in text.splitlines()]


def written(*entries: AccessLogEntry) -> list[dict[str, object]]:
    sink = ListSink()
    logger = AccessLogger(sink)
    for e in entries:
        logger.log(e)
    assert logger.close(timeout_s=10)
    assert sink.closed
    return sink.lines()


def test_every_field_is_written_with_envoy_names_and_types() -> None:
    entry = AccessLogEntry(
        start_time="2024-05-01T12:34:56.789Z",
        route_name="default/web",
        method="POST",
        path="/api/items?x=1",
        protocol="HTTP/2",
        response_code=503,
        response_flags="UF,URX",
        bytes_received=12,
        bytes_sent=345,
        duration=27,
        x_forwarded_for="203.0.113.9",
        user_agent="curl/8.5.0",
        request_id="0b6f7c3e-2f7a-4f4e-9a52-1c2d3e4f5a6b",
        authority="web.example.com",
        upstream_host="10.0.0.5:8080",
        upstream_cluster="default/web:80",
        downstream_local_address="10.0.0.2:8443",
        downstream_remote_address="203.0.113.9:51234",
        requested_server_name="web.example.com",
        upstream_request_attempt_count=3,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        downstream_peer_principal="spiffe://cluster.local/ns/default/sa/client",
    )
    [line] = written(entry)
    assert list(line) == KEYS
    assert line == {
        "start_time": "2024-05-01T12:34:56.789Z",
        "route_name": "default/web",
        "method": "POST",
        "path": "/api/items?x=1",
        "protocol": "HTTP/2",
        "response_code": 503,
        "response_flags": "UF,URX",
        "bytes_received": 12,
        "bytes_sent": 345,
        "duration": 27,
        "x_forwarded_for": "203.0.113.9",
        "user_agent": "curl/8.5.0",
        "request_id": "0b6f7c3e-2f7a-4f4e-9a52-1c2d3e4f5a6b",
        "authority": "web.example.com",
        "upstream_host": "10.0.0.5:8080",
        "upstream_cluster": "default/web:80",
        "downstream_local_address": "10.0.0.2:8443",
        "downstream_remote_address": "203.0.113.9:51234",
        "requested_server_name": "web.example.com",
        "upstream_request_attempt_count": 3,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "downstream_peer_principal": "spiffe://cluster.local/ns/default/sa/client",
    }


def test_absent_values_are_null_and_every_key_is_present() -> None:
    entry = AccessLogEntry(start_time="2024-05-01T00:00:00.000Z", method="GET", path="/",
                           protocol="HTTP/1.1", response_code=404, authority="a",
                           response_flags="NR")  # fmt: skip
    [line] = written(entry)
    assert list(line) == KEYS
    assert line["response_flags"] == "NR"
    for key in ("route_name", "x_forwarded_for", "user_agent", "request_id", "upstream_host",
                "upstream_cluster", "downstream_local_address", "requested_server_name",
                "trace_id", "downstream_peer_principal"):  # fmt: skip
        assert line[key] is None, key
    assert line["bytes_sent"] == 0 and line["upstream_request_attempt_count"] == 0


def test_one_entry_is_one_line_even_with_newlines_in_values() -> None:
    entry = AccessLogEntry(start_time="t", method="GET", path="/a\nb", protocol="HTTP/1.1",
                           response_code=200, authority="h\r\n", user_agent='x"y')  # fmt: skip
    [line] = written(entry)
    assert line["path"] == "/a\nb" and line["authority"] == "h\r\n" and line["user_agent"] == 'x"y'


@pytest.mark.parametrize(
    ("epoch", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1714566896.789, "2024-05-01T12:34:56.789Z"),
        (1714566896.0004, "2024-05-01T12:34:56.000Z"),
        (1714566897.5, "2024-05-01T12:34:57.500Z"),
        (1714566896.999, "2024-05-01T12:34:56.999Z"),
    ],
)
def test_start_time_is_rfc3339_utc_with_milliseconds(epoch: float, text: str) -> None:
    assert format_start_time(epoch) == text


def test_start_time_agrees_with_datetime_across_seconds() -> None:
    base = time.time()
    for i in range(2000):  # crosses several seconds: the cache is both refreshed and reused
        t = base + i * 0.0037
        exact = datetime.fromtimestamp(t, UTC)
        got = datetime.strptime(format_start_time(t), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        # Truncated to the millisecond (datetime itself rounds to the microsecond).
        assert timedelta(microseconds=-1) <= exact - got < timedelta(milliseconds=1), t


def test_flags_are_joined_in_envoy_order() -> None:
    assert join_flags([]) == "-"
    assert join_flags(["-", ""]) == "-"
    assert join_flags(["UO"]) == "UO"
    assert join_flags(["URX", "UF"]) == "UF,URX"
    assert join_flags(["URX", "UF", "UF"]) == "UF,URX"
    assert join_flags(["DC", "UF,URX", "UT"]) == "UT,UF,DC,URX"
    assert join_flags(["FI", "DI", "RL"]) == "DI,FI,RL"


def test_flags_from_the_issue_are_all_known() -> None:
    known = {code for code, _long in ENVOY_FLAGS}
    issue = {"UO", "UH", "UF", "URX", "UT", "NR", "RL", "FI", "DC", "UC", "UR", "UPE", "NC", "DI"}
    assert issue <= known
    assert len(known) == len(ENVOY_FLAGS)


def test_unknown_flag_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="XYZ"):
        join_flags(["UF", "XYZ"])


def test_telemetry_does_not_import_proxy_or_transport() -> None:
    code = (
        "import sys, gateway.telemetry.access_log\n"
        "bad = [m for m in sys.modules if m.startswith(('gateway.proxy', 'gateway.transport'))]\n"
        "print(bad)\n"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=root)  # fmt: skip
    assert out.stdout.strip() == "[]"
