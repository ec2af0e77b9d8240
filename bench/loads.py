"""The three loads: run wrk / h2load pinned to the load core and parse their output.

1. :func:`http1_throughput` - ``wrk -t1 -c50``: HTTP/1.1 keep-alive requests/s.
2. :func:`h2c_throughput` - ``h2load -c10 -m10``: h2c (prior knowledge), 10
   connections x 10 concurrent streams, requests/s.
3. :func:`fixed_rate_latency` - ``h2load --rps`` at a fixed total rate (1000/s by
   default, 10 connections x 100/s, arrivals spread evenly - see
   :func:`latency_argv`); h2load prints only min/max/mean/sd, so the
   per-request log (``--log-file``) is read and p50/p90/p99/max computed here.

A load that gets more than :data:`MAX_BAD_FRACTION` of non-2xx answers or
transport errors raises :class:`~bench.procs.BenchError`: a proxy that answers
502 quickly must not look fast.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.procs import BenchError, pinned

#: Above this fraction of failed or non-2xx requests a load counts as failed.
MAX_BAD_FRACTION = 0.01


@dataclass
class Throughput:
    """Result of a closed-loop throughput load."""

    tool: str
    rps: float
    requests: int
    bad: int
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Latency:
    """Result of an open-loop fixed-rate load, latencies in milliseconds."""

    target_rps: float
    achieved_rps: float
    samples: int
    bad: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _run(argv: list[str], timeout: float) -> str:
    """Run a load generator and return stdout+stderr, raising BenchError on failure."""
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from exc
    out = done.stdout + done.stderr
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {done.returncode}:\n{out[-3000:]}")
    return out


def _check_bad(tool: str, requests: int, bad: int, out: str) -> None:
    if requests <= 0:
        raise BenchError(f"{tool}: no request completed:\n{out[-3000:]}")
    if bad > MAX_BAD_FRACTION * requests:
        raise BenchError(
            f"{tool}: {bad} of {requests} requests failed or were not 2xx:\n{out[-3000:]}"
        )


# --------------------------------------------------------------------------- wrk

#: Duration units as printed by wrk and h2load, in seconds.
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(\w+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_WRK_SOCKERR = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(out: str) -> Throughput:
    """Parse wrk's summary (requests/s, totals, non-2xx and socket errors)."""
    rps = _WRK_RPS.search(out)
    total = _WRK_TOTAL.search(out)
    if not rps or not total:
        raise BenchError(f"could not parse wrk output:\n{out[-3000:]}")
    requests = int(total.group(1))
    secs = float(total.group(2)) * _UNITS.get(total.group(3), 1.0)
    bad = 0
    if m := _WRK_NON2XX.search(out):
        bad += int(m.group(1))
    if m := _WRK_SOCKERR.search(out):
        # "read" errors include connections closed by the peer; all count as bad.
        bad += sum(int(g) for g in m.groups())
    return Throughput("wrk", float(rps.group(1)), requests, bad, secs)


def http1_throughput(
    url: str, duration: int, warmup: int, cpu: int, connections: int = 50
) -> Throughput:
    """``wrk -t1 -cN``: HTTP/1.1 keep-alive throughput (after a discarded warm-up run)."""
    if warmup > 0:
        _run(pinned(["wrk", "-t1", f"-c{connections}", f"-d{warmup}s", url], cpu), warmup + 30)
    argv = pinned(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", url], cpu)
    out = _run(argv, duration + 30)
    result = parse_wrk(out)
    _check_bad("wrk", result.requests, result.bad, out)
    return result


# ------------------------------------------------------------------------ h2load

_H2_FINISHED = re.compile(r"finished in ([\d.]+)(\w+), ([\d.]+) req/s")
_H2_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_H2_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def parse_h2load(out: str) -> Throughput:
    """Parse h2load's summary. ``bad`` = failed + errored + timeout + non-2xx (excl. 3xx)."""
    fin = _H2_FINISHED.search(out)
    req = _H2_REQUESTS.search(out)
    status = _H2_STATUS.search(out)
    if not fin or not req or not status:
        raise BenchError(f"could not parse h2load output:\n{out[-3000:]}")
    if "Application protocol: h2c" not in out:
        raise BenchError(f"h2load did not negotiate h2c:\n{out[-3000:]}")
    done = int(req.group(3))
    failed = int(req.group(5)) + int(req.group(6)) + int(req.group(7))
    non2xx = int(status.group(3)) + int(status.group(4))
    secs = float(fin.group(1)) * _UNITS.get(fin.group(2), 1.0)
    return Throughput("h2load", float(fin.group(3)), done, failed + non2xx, secs)


def h2c_throughput(
    url: str, duration: int, warmup: int, cpu: int, clients: int = 10, streams: int = 10
) -> Throughput:
    """``h2load -cN -mM -D``: h2c prior-knowledge throughput."""
    argv = ["h2load", "-t1", f"-c{clients}", f"-m{streams}", "-D", str(duration)]
    if warmup > 0:
        argv += ["--warm-up-time", str(warmup)]
    out = _run(pinned([*argv, url], cpu), duration + warmup + 30)
    result = parse_h2load(out)
    _check_bad("h2load", result.requests, result.bad, out)
    return result


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of pre-sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def parse_h2load_log(text: str, skip_first: int = 0) -> tuple[list[float], int]:
    """Parse ``h2load --log-file`` lines: start_us<TAB>status<TAB>duration_us.

    The ``skip_first`` earliest requests (by start time) are left out. Returns
    the sorted latencies (ms) of 2xx responses and the count of other answers.
    """
    rows: list[tuple[int, int, int]] = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            rows.append((int(parts[0]), int(parts[1]), int(parts[2])))
    rows.sort()
    latencies: list[float] = []
    bad = 0
    for _start, status, dur_us in rows[skip_first:]:
        if 200 <= status < 300:
            latencies.append(dur_us / 1000.0)
        else:
            bad += 1
    latencies.sort()
    return latencies, bad


def latency_argv(
    url: str, seconds: int, total_rps: int, clients: int, burst: bool, log_file: str | None
) -> list[str]:
    """The h2load command line for ``seconds`` of load at ``total_rps``.

    Each of ``clients`` connections sends ``total_rps / clients`` requests/s
    (``--rps``). h2load fires every client's timer in the same instant, so by
    default (``burst=False``) the connections are opened ``1000 / total_rps`` ms
    apart (``-r1 --rate-period``) and the requests arrive evenly spread instead
    of in bursts of ``clients``. h2load forbids ``-D`` together with ``-r``, so
    that mode is request-count based (``-n = total_rps * seconds``). With
    ``burst=True`` it is the plain ``-D`` duration run.
    """
    per_client = max(1, round(total_rps / clients))
    # -m10 only gives headroom: at this rate a stream rarely waits for another.
    argv = ["h2load", "-t1", f"-c{clients}", "-m10", f"--rps={per_client}"]
    if burst:
        argv += ["-D", str(seconds)]
    else:
        period_ms = max(1, round(1000 / (per_client * clients)))
        argv += ["-r1", f"--rate-period={period_ms}ms", f"-n{per_client * clients * seconds}"]
    if log_file:
        argv.append(f"--log-file={log_file}")
    return [*argv, url]


def fixed_rate_latency(
    url: str,
    duration: int,
    warmup: int,
    cpu: int,
    total_rps: int = 1000,
    clients: int = 10,
    burst: bool = False,
) -> Latency:
    """Open-loop load at ``total_rps`` (``clients`` x ``--rps``); latency percentiles.

    A discarded warm-up run of ``warmup`` seconds comes first. The first request
    of each connection (which also pays for the HTTP/2 handshake) is left out.
    """
    if warmup > 0:
        _run(pinned(latency_argv(url, warmup, total_rps, clients, burst, None), cpu),
             3 * warmup + 30)  # fmt: skip
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log:
        argv = latency_argv(url, duration, total_rps, clients, burst, log.name)
        out = _run(pinned(argv, cpu), 3 * duration + 30)
        summary = parse_h2load(out)
        latencies, bad_logged = parse_h2load_log(Path(log.name).read_text(), clients)
    bad = max(summary.bad, bad_logged)
    _check_bad("h2load --rps", summary.requests, bad, out)
    if not latencies:
        raise BenchError(f"h2load --log-file recorded no successful request:\n{out[-3000:]}")
    return Latency(
        target_rps=float(max(1, round(total_rps / clients)) * clients),
        achieved_rps=summary.rps,
        samples=len(latencies),
        bad=bad,
        p50_ms=round(percentile(latencies, 50), 3),
        p90_ms=round(percentile(latencies, 90), 3),
        p99_ms=round(percentile(latencies, 99), 3),
        max_ms=round(latencies[-1], 3),
        mean_ms=round(sum(latencies) / len(latencies), 3),
    )


def h2c_check(url: str, cpu: int, requests: int = 20) -> None:
    """A few h2c requests; raise BenchError unless all succeed with 2xx."""
    out = _run(pinned(["h2load", "-t1", "-c1", f"-n{requests}", url], cpu), 30)
    result = parse_h2load(out)
    if result.requests != requests or result.bad:
        raise BenchError(f"h2c check of {url} failed:\n{out[-3000:]}")
