"""The PKI and mTLS benchmarks (issue 4), run after the proxy comparison by ``bench.run``.

On the same pinned cores as the comparison (servers on the proxy core, load generators and
the shared upstream nginx on the load core):

1. **CSR signings per second**, EC P-256, one core: :mod:`bench.pki_sign` pinned to the
   proxy core (parse, check, sign and encode pre-generated CSRs). Target: at least 1000/s.
   Then the same work through the real CA service: ``isthmus pki serve`` (HTTPS, bootstrap
   tokens) on the proxy core, ``POST /v1/certificates`` from :mod:`bench.pki_client` (16
   keep-alive HTTPS connections) on the load core.
2. **Full mTLS handshakes per second**: an Isthmus sidecar whose inbound port is
   ``PeerAuthentication`` STRICT, against nginx terminating TLS with
   ``ssl_verify_client on``; same EC P-256 certificate, TLS 1.3, same upstream. Every
   connection is new: full handshake with a client certificate, one request, close.
3. **Keep-alive throughput over mTLS as a ratio to plaintext**: the same sidecar
   configuration with the inbound port STRICT, then DISABLE (plaintext); 50 persistent
   HTTP/1.1 connections. wrk runs against the plaintext port too, to show whether the Python
   load generator held the plaintext figure back.

The load generator is :mod:`bench.pki_client` (wrk and h2load cannot present a client
certificate), run as :data:`CLIENT_PROCS` processes. Every load records the CPU used by the
server and by the load side (clients + upstream); a server that did not use most of its core
was not the bottleneck, so beside each ratio of requests/s the run also gives the ratio per
second of server CPU, which does not depend on who ran out of CPU first.
"""

from __future__ import annotations

import json
import math
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import configs, loads
from bench.pki_setup import (
    TRUST_DOMAIN,
    Material,
    bootstrap_tokens,
    make_material,
    nginx_mtls,
    sidecar_config,
)
from bench.procs import (
    BenchError,
    Proc,
    Supervisor,
    core_busy_pct,
    core_times,
    cpu_seconds,
    free_ports,
    pinned,
    wait_http,
)

REPO = Path(__file__).resolve().parent.parent
SIGN_TARGET = 1000.0
CLIENT_PROCS = 2
HANDSHAKE_CONNECTIONS = 16  # per client process
KEEPALIVE_CONNECTIONS = 25  # per client process: 50 in all, like wrk -c50
CA_CONNECTIONS = 16
#: Seconds the load client processes get to start (import, contexts) before the load begins.
CLIENT_STARTUP = 1.5
#: Above this share of failed answers or connections a load counts as failed.
MAX_BAD_FRACTION = 0.01
#: A server below this CPU % during a load was not what limited it.
SATURATED_PCT = 85.0
READY_TIMEOUT = 20.0


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class Env:
    """Where Isthmus and the benchmark's Python helpers are run from."""

    def __init__(self, isthmus_tree: Path | None) -> None:
        self.tree = isthmus_tree.resolve() if isthmus_tree is not None else None

    def python(self, args: list[str]) -> tuple[list[str], Path, dict[str, str]]:
        """argv, cwd and environment to run ``python args`` with Isthmus from the tree (the
        mypyc build) and ``bench`` from the checkout."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        cwd = REPO
        if self.tree is not None:
            cwd = self.tree
            env["PYTHONPATH"] = f"{self.tree}{os.pathsep}{REPO}"
        return [sys.executable, *args], cwd, env


# ---------------------------------------------------------------------- measuring


def _sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


def run_load(
    env: Env,
    server: Proc,
    upstream: Proc,
    load_cpu: int,
    argvs: list[list[str]],
    duration: float,
    warmup: float,
) -> dict[str, Any]:
    """Run the client processes ``argvs`` at once, pinned to ``load_cpu``, and measure.

    Every client begins at the same instant, :data:`CLIENT_STARTUP` from now, and counts
    answers in the window from ``warmup`` after that, ``duration`` long. The CPU of the
    server (and its children), of the upstream and of each core is read at the window's
    edges; the clients report their own CPU inside it. Adds to the combined counts:

    * ``server_cpu_pct``, ``load_side_cpu_pct`` (clients + upstream), ``*_core_busy_pct``;
    * ``per_server_cpu_s``: answers per second of server CPU, what the server does per core
      whoever ran out of CPU first.
    """
    begin = time.monotonic() + CLIENT_STARTUP
    procs = []
    for args in argvs:
        argv, cwd, penv = env.python(
            ["-m", "bench.pki_client", *args, "--start-at", f"{begin:.6f}",
             "--duration", str(duration), "--warmup", str(warmup)]
        )  # fmt: skip
        procs.append(
            subprocess.Popen(
                pinned(argv, load_cpu),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=penv,
                text=True,
            )
        )
    try:
        _sleep_until(begin + warmup)
        pids = server.tree()
        cpu0, up0, cores0 = cpu_seconds(pids), cpu_seconds(upstream.tree()), core_times()
        _sleep_until(begin + warmup + duration)
        cores1 = core_times()
        cpu1 = cpu_seconds(list(dict.fromkeys([*pids, *server.tree()])))
        up1 = cpu_seconds(upstream.tree())
        parts = _collect(procs, timeout=warmup + 60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    result = _combine(parts)
    late = max(float(p.get("late_s", 0.0)) for p in parts)
    if late > warmup:
        raise BenchError(
            f"a load client was ready {late:.1f}s after the start, later than the warm-up "
            f"({warmup:g}s): the machine is too busy"
        )
    busy = core_busy_pct(cores0, cores1)
    server_pct = 100.0 * max(0.0, cpu1 - cpu0) / duration
    clients = sum(float(p["cpu_s"]) for p in parts)
    result["server_cpu_pct"] = round(server_pct, 1)
    result["load_side_cpu_pct"] = round(100.0 * (clients + max(0.0, up1 - up0)) / duration, 1)
    result["server_core_busy_pct"] = busy.get(server.cpu)
    result["load_core_busy_pct"] = busy.get(load_cpu)
    result["per_server_cpu_s"] = (
        round(result["rps"] / (server_pct / 100.0), 1) if server_pct else None
    )
    return result


def _collect(procs: list[subprocess.Popen[str]], timeout: float) -> list[dict[str, Any]]:
    """Wait for the clients; their JSON results, or BenchError naming what went wrong."""
    out: list[dict[str, Any]] = []
    problems: list[str] = []
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
            problems.append(f"a load client did not finish within {timeout:.0f}s")
            continue
        if p.returncode != 0:
            problems.append(f"a load client exited {p.returncode}:\n{stderr[-2000:]}")
            continue
        try:
            out.append(json.loads(stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            problems.append(f"unreadable load client output:\n{stdout[-1000:]}{stderr[-1000:]}")
    if problems:
        raise BenchError("\n".join(problems))
    return out


def _combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
    ok = sum(int(p["ok"]) for p in parts)
    bad = sum(int(p["bad"]) for p in parts)
    errors = sum(int(p["errors"]) for p in parts)
    elapsed = max(float(p["elapsed_s"]) for p in parts)
    statuses: dict[str, int] = {}
    for p in parts:
        for code, n in p.get("statuses", {}).items():
            statuses[code] = statuses.get(code, 0) + int(n)
    first = next((p["first_error"] for p in parts if p.get("first_error")), "")
    out: dict[str, Any] = {
        "rps": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "ok": ok,
        "bad": bad,
        "errors": errors,
        "elapsed_s": elapsed,
        "client_procs": len(parts),
        "reused_sessions": sum(int(p.get("reused_sessions", 0)) for p in parts),
        "budget_waits": sum(int(p.get("budget_waits", 0)) for p in parts),
    }
    if statuses:
        out["statuses"] = statuses
    if first:
        out["first_error"] = first
    if ok == 0 or bad + errors > MAX_BAD_FRACTION * (ok + bad + errors):
        raise BenchError(
            f"{ok} answered 200, {bad} other answers {statuses or ''}, {errors} connection "
            f"errors; first: {first or '-'}"
        )
    return out


def _median(label: str, repeat: int, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    runs = []
    for i in range(repeat):
        n = f" (run {i + 1}/{repeat})" if repeat > 1 else ""
        log(f"pki: {label}{n}")
        runs.append(fn())
        r = runs[-1]
        log(f"pki:   -> {r['rps']:,.0f}/s; CPU %: server {r['server_cpu_pct']:.0f}, "
            f"load side {r['load_side_cpu_pct']:.0f}")  # fmt: skip
    ordered = sorted(runs, key=lambda r: float(r["rps"]))
    kept = dict(ordered[(len(ordered) - 1) // 2])
    kept["runs"] = [r["rps"] for r in runs]
    return kept


# ------------------------------------------------------------------------ servers


def _client_context(material: Material) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(material.bundle))
    ctx.load_cert_chain(str(material.client.chain), str(material.client.key))
    return ctx


def check_once(port: int, ctx: ssl.SSLContext | None, what: str) -> None:
    """One ``GET /`` (TLS when ``ctx``); raise BenchError unless it gets the upstream's body."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            sock: socket.socket = ctx.wrap_socket(raw) if ctx is not None else raw
            sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except (OSError, ssl.SSLError) as exc:
        raise BenchError(f"{what}: request failed: {type(exc).__name__}: {exc}") from exc
    if not answer.startswith(b"HTTP/1.1 200") or not answer.endswith(configs.BODY):
        raise BenchError(f"{what}: unexpected answer {answer[:300]!r}")


def start_sidecar(
    sup: Supervisor, env: Env, tmp: Path, material: Material, upstream_port: int, cpu: int,
    mode: str,
) -> tuple[Proc, int]:  # fmt: skip
    """An Isthmus sidecar whose inbound port runs PeerAuthentication ``mode``; (proc, port)."""
    inbound, outbound, admin = free_ports(3)
    confdir = tmp / f"sidecar-{mode.lower()}"
    confdir.mkdir()
    for name, text in sidecar_config(mode).items():
        (confdir / name).write_text(text)
    argv, cwd, penv = env.python(
        ["-m", "isthmus", "gateway", "run", "--role", "sidecar", "--config", str(confdir),
         "--admin", f"127.0.0.1:{admin}", "--workers", "1",
         "--inbound-port", str(inbound), "--inbound-address", "127.0.0.1",
         "--app-port", str(upstream_port), "--outbound-port", str(outbound),
         "--cert", str(material.server.chain), "--key", str(material.server.key),
         "--bundle", str(material.server.bundle)]
    )  # fmt: skip
    proc = sup.start(f"sidecar-{mode.lower()}", argv, cpu, cwd=cwd, env=penv)
    wait_http(f"http://127.0.0.1:{admin}/ready", proc, READY_TIMEOUT,
              what=f"isthmus sidecar ({mode}) admin /ready")  # fmt: skip
    return proc, inbound


def start_nginx_mtls(
    sup: Supervisor, tmp: Path, material: Material, upstream_port: int, cpu: int
) -> tuple[Proc, int]:
    (port,) = free_ports(1)
    conf = tmp / "nginx-mtls.conf"
    conf.write_text(nginx_mtls(tmp, port, upstream_port, material.server))
    argv = ["nginx", "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "nginx-mtls.err"),
            "-g", "daemon off;"]  # fmt: skip
    proc = sup.start("nginx-mtls", argv, cpu)
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if not proc.alive():
            raise BenchError(f"nginx (mTLS) exited {proc.popen.returncode}:\n{proc.output_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"nginx (mTLS) not listening on {port}") from None
            time.sleep(0.05)


def start_ca_service(
    sup: Supervisor, env: Env, tmp: Path, material: Material, tokens: Path, cpu: int
) -> tuple[Proc, int]:
    (port,) = free_ports(1)
    argv, cwd, penv = env.python(
        ["-m", "isthmus", "pki", "serve", "--ca", str(material.cacerts),
         "--listen", f"127.0.0.1:{port}", "--trust-domain", TRUST_DOMAIN,
         "--bootstrap-tokens", str(tokens), "--audit-log", str(tmp / "ca-audit.jsonl")]
    )  # fmt: skip
    proc = sup.start("ca-service", argv, cpu, cwd=cwd, env=penv)
    ctx = ssl.create_default_context(cafile=str(material.bundle))
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if not proc.alive():
            raise BenchError(
                f"isthmus pki serve exited {proc.popen.returncode}:\n{proc.output_tail()}"
            )
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                ctx.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                return proc, port
        except (OSError, ssl.SSLError):
            if time.monotonic() > deadline:
                raise BenchError(
                    f"isthmus pki serve: no TLS on port {port} after {READY_TIMEOUT:.0f}s\n"
                    f"{proc.output_tail()}"
                ) from None
            time.sleep(0.1)


# -------------------------------------------------------------------------- parts


def bench_signing(env: Env, material: Material, duration: int, warmup: float, cpu: int
                  ) -> dict[str, Any]:  # fmt: skip
    log(f"pki: CSR signings, EC P-256, core {cpu}, {duration}s")
    argv, cwd, penv = env.python(
        ["-m", "bench.pki_sign", "--ca", str(material.cacerts), "--duration", str(duration),
         "--warmup", str(min(warmup, 1))]
    )  # fmt: skip
    done = subprocess.run(pinned(argv, cpu), capture_output=True, text=True, cwd=cwd, env=penv,
                          timeout=duration + 120, check=False)  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"bench.pki_sign exited {done.returncode}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"pki:   -> {result['per_s']:,.0f} signings/s ({result['per_cpu_s']:,.0f} per CPU-s)")
    return result


def _ca_identities(sign_rate: float, duration: int, warmup: float) -> int:
    """Enough identities that the per-identity rate limit never holds the client back, even
    if the service signed at half the bare signing rate."""
    window = duration + warmup + 2
    per_identity = 9 + 0.9 * window
    return max(32, min(2000, math.ceil(sign_rate / 2 * window / per_identity)))


def bench_ca_service(
    sup: Supervisor, env: Env, tmp: Path, material: Material, upstream: Proc,
    sign_rate: float, duration: int, warmup: float, repeat: int, proxy_cpu: int, load_cpu: int,
) -> dict[str, Any]:  # fmt: skip
    count = _ca_identities(sign_rate, duration, warmup)
    tokens, identities = bootstrap_tokens(tmp, count, "r0w")
    proc, port = start_ca_service(sup, env, tmp, material, tokens, proxy_cpu)
    runs = 0
    try:
        args = ["ca", "--url", f"https://127.0.0.1:{port}/v1/certificates",
                "--identities", str(identities), "--ca", str(material.bundle),
                "--connections", str(CA_CONNECTIONS)]  # fmt: skip

        def load() -> dict[str, Any]:
            nonlocal runs
            if runs:  # fresh identities, so no run starts on buckets the last one emptied
                bootstrap_tokens(tmp, count, f"r{runs}w")
            runs += 1
            return run_load(env, proc, upstream, load_cpu, [args], duration, warmup)

        result = _median(f"CA service POST /v1/certificates, {CA_CONNECTIONS} connections, "
                         f"{duration}s", repeat, load)  # fmt: skip
        result["identities"] = count
        return result
    finally:
        sup.stop(proc)


def _client_args(mode: str, port: int, material: Material | None, connections: int
                 ) -> list[str]:  # fmt: skip
    args = [mode, "--port", str(port), "--connections", str(connections)]
    if material is not None:
        args += ["--cert", str(material.client.chain), "--key", str(material.client.key),
                 "--ca", str(material.bundle)]  # fmt: skip
    return args


def _load(env: Env, server: Proc, upstream: Proc, load_cpu: int, args: list[str],
          duration: int, warmup: float) -> Callable[[], dict[str, Any]]:  # fmt: skip
    def fn() -> dict[str, Any]:
        return run_load(env, server, upstream, load_cpu, [args] * CLIENT_PROCS, duration, warmup)

    return fn


def _wrk_plaintext(port: int, duration: int, warmup: float, cpu: int) -> float:
    url = f"http://127.0.0.1:{port}/"
    return loads.http1_throughput(url, duration, int(warmup), cpu).rps


def _ratio(a: Any, b: Any) -> float | None:
    return round(float(a) / float(b), 3) if a and b else None


def run(
    sup: Supervisor,
    tmp: Path,
    upstream: Proc,
    upstream_port: int,
    *,
    isthmus_tree: Path | None,
    duration: int,
    warmup: int,
    repeat: int,
    proxy_cpu: int,
    load_cpu: int,
    smoke: bool = False,
) -> dict[str, Any]:
    """All PKI benchmarks; a part that fails is recorded in ``errors`` and the rest still run.

    ``smoke`` shortens every load to 1 s after a 0.5 s warm-up, so the section stays well
    under 30 s.
    """
    env = Env(isthmus_tree)
    base = tmp / "pki"
    base.mkdir()
    material = make_material(base)
    out: dict[str, Any] = {"errors": [], "warnings": []}
    ctx = _client_context(material)
    d, w, lc = (1, 0.5, load_cpu) if smoke else (duration, float(warmup), load_cpu)

    def part(key: str, what: str, fn: Callable[[], Any]) -> None:
        try:
            out[key] = fn()
        except BenchError as exc:
            out["errors"].append(f"{what}: {exc}")
            log(f"pki: {what} FAILED:\n{exc}")

    part("signing", "CSR signings", lambda: bench_signing(env, material, d, w, proxy_cpu))
    sign_rate = float(out.get("signing", {}).get("per_s") or 2000.0)
    part("ca_service", "CA service",
         lambda: bench_ca_service(sup, env, tmp, material, upstream, sign_rate, d, w, repeat,
                                  proxy_cpu, lc))  # fmt: skip

    handshakes: dict[str, Any] = {}
    keepalive: dict[str, Any] = {}

    def isthmus_strict() -> None:
        proc, port = start_sidecar(sup, env, tmp, material, upstream_port, proxy_cpu, "STRICT")
        try:
            check_once(port, ctx, "Isthmus STRICT inbound")
            hs = _client_args("handshake", port, material, HANDSHAKE_CONNECTIONS)
            handshakes["isthmus"] = _median(
                f"Isthmus mTLS handshakes, {CLIENT_PROCS}x{HANDSHAKE_CONNECTIONS} connections",
                repeat, _load(env, proc, upstream, lc, hs, d, w))  # fmt: skip
            ka = _client_args("keepalive", port, material, KEEPALIVE_CONNECTIONS)
            keepalive["mtls"] = _median(
                f"Isthmus keep-alive over mTLS, {CLIENT_PROCS}x{KEEPALIVE_CONNECTIONS} "
                "connections", repeat, _load(env, proc, upstream, lc, ka, d, w))  # fmt: skip
        finally:
            sup.stop(proc)

    def nginx() -> None:
        proc, port = start_nginx_mtls(sup, tmp, material, upstream_port, proxy_cpu)
        try:
            check_once(port, ctx, "nginx mTLS")
            hs = _client_args("handshake", port, material, HANDSHAKE_CONNECTIONS)
            handshakes["nginx"] = _median(
                f"nginx mTLS handshakes, {CLIENT_PROCS}x{HANDSHAKE_CONNECTIONS} connections",
                repeat, _load(env, proc, upstream, lc, hs, d, w))  # fmt: skip
        finally:
            sup.stop(proc)

    def isthmus_plain() -> None:
        proc, port = start_sidecar(sup, env, tmp, material, upstream_port, proxy_cpu, "DISABLE")
        try:
            check_once(port, None, "Isthmus DISABLE (plaintext) inbound")
            ka = _client_args("keepalive", port, None, KEEPALIVE_CONNECTIONS)
            keepalive["plaintext"] = _median(
                f"Isthmus keep-alive plaintext, {CLIENT_PROCS}x{KEEPALIVE_CONNECTIONS} "
                "connections", repeat, _load(env, proc, upstream, lc, ka, d, w))  # fmt: skip
            log(f"pki: Isthmus plaintext with wrk -c50 {d}s (load generator check)")
            keepalive["wrk_plaintext_rps"] = _wrk_plaintext(port, d, w, lc)
            log(f"pki:   -> {keepalive['wrk_plaintext_rps']:,.0f} req/s")
        finally:
            sup.stop(proc)

    part("_strict", "Isthmus STRICT sidecar", isthmus_strict)
    part("_nginx", "nginx mTLS", nginx)
    part("_plain", "Isthmus plaintext sidecar", isthmus_plain)
    for key in ("_strict", "_nginx", "_plain"):
        out.pop(key, None)

    if handshakes:
        i, n = handshakes.get("isthmus", {}), handshakes.get("nginx", {})
        handshakes["ratio"] = _ratio(i.get("rps"), n.get("rps"))
        handshakes["ratio_per_server_cpu"] = _ratio(i.get("per_server_cpu_s"),
                                                    n.get("per_server_cpu_s"))  # fmt: skip
        out["handshakes"] = handshakes
    if keepalive:
        m, p = keepalive.get("mtls", {}), keepalive.get("plaintext", {})
        keepalive["ratio"] = _ratio(m.get("rps"), p.get("rps"))
        keepalive["ratio_per_server_cpu"] = _ratio(m.get("per_server_cpu_s"),
                                                   p.get("per_server_cpu_s"))  # fmt: skip
        out["keepalive"] = keepalive
    for what, r in (
        ("CA service", out.get("ca_service")),
        ("Isthmus handshakes", handshakes.get("isthmus")),
        ("nginx handshakes", handshakes.get("nginx")),
        ("Isthmus keep-alive mTLS", keepalive.get("mtls")),
        ("Isthmus keep-alive plaintext", keepalive.get("plaintext")),
    ):
        if not r or r.get("server_cpu_pct", 100.0) >= SATURATED_PCT:
            continue
        out["warnings"].append(
            f"{what}: the server used {r['server_cpu_pct']:.0f}% of its core, the load side "
            f"{r['load_side_cpu_pct']:.0f}% of its own: {_why(r)}; compare the "
            "per-server-CPU figures"
        )
    if out.get("signing"):
        out["signing"]["target"] = SIGN_TARGET
        out["signing"]["status"] = "PASS" if out["signing"]["per_s"] >= SIGN_TARGET else "MISS"
    return out


def _why(r: dict[str, Any]) -> str:
    """Why a server below :data:`SATURATED_PCT` was held back, from the core readings."""
    reasons = []
    server_others = (r.get("server_core_busy_pct") or 0.0) - r["server_cpu_pct"]
    load_others = (r.get("load_core_busy_pct") or 0.0) - r["load_side_cpu_pct"]
    if r["load_side_cpu_pct"] >= SATURATED_PCT:
        reasons.append("the load generator was the bottleneck")
    if server_others > 100.0 - SATURATED_PCT:
        reasons.append(f"other processes used ~{server_others:.0f}% of the server's core")
    if load_others > 100.0 - SATURATED_PCT:
        reasons.append(f"other processes used ~{load_others:.0f}% of the load core")
    return ", ".join(reasons) or "neither core was full (latency-bound)"


# -------------------------------------------------------------------------- report


def _n(v: Any, spec: str = ",.0f") -> str:
    return "-" if v is None else format(v, spec)


def render(res: dict[str, Any]) -> str:
    if not res:
        return ""
    lines = ["", "PKI and mTLS (Isthmus)"]
    s = res.get("signing")
    if s:
        lines.append(
            f"  CSR signings/s, EC P-256, one core (parse, check, sign, PEM): "
            f"{_n(s['per_s'])}/s ({_n(s['per_cpu_s'])} per CPU-s)  "
            f"(target >= {SIGN_TARGET:,.0f}: {s['status']})"
        )
    c = res.get("ca_service")
    if c:
        lines.append(
            f"  through the CA service (isthmus pki serve, {CA_CONNECTIONS} keep-alive HTTPS "
            f"connections): {_n(c['rps'])} certificates/s ({_n(c['per_server_cpu_s'])} per "
            f"service CPU-s; service CPU {c['server_cpu_pct']:.0f}%)"
        )
    h = res.get("handshakes", {})
    i, n = h.get("isthmus"), h.get("nginx")
    if i or n:
        lines.append(
            "  full mTLS handshakes/s (TLS 1.3, client cert, 1 request, close): "
            f"Isthmus {_n(i and i['rps'])}, nginx {_n(n and n['rps'])} = "
            f"{_n(h.get('ratio'), '.2f')}x"
        )
        lines.append(
            f"    per second of server CPU: Isthmus {_n(i and i['per_server_cpu_s'])}, nginx "
            f"{_n(n and n['per_server_cpu_s'])} = {_n(h.get('ratio_per_server_cpu'), '.2f')}x"
            f"  (server CPU %: {_n(i and i['server_cpu_pct'])} / "
            f"{_n(n and n['server_cpu_pct'])})"
        )
    k = res.get("keepalive", {})
    m, p = k.get("mtls"), k.get("plaintext")
    if m or p:
        lines.append(
            f"  keep-alive HTTP/1.1 req/s, 50 connections: mTLS {_n(m and m['rps'])}, plaintext "
            f"{_n(p and p['rps'])} = {_n(k.get('ratio'), '.2f')}x"
        )
        lines.append(
            f"    per second of server CPU: mTLS {_n(m and m['per_server_cpu_s'])}, plaintext "
            f"{_n(p and p['per_server_cpu_s'])} = {_n(k.get('ratio_per_server_cpu'), '.2f')}x"
            f"  (server CPU %: {_n(m and m['server_cpu_pct'])} / "
            f"{_n(p and p['server_cpu_pct'])}; wrk -c50 plaintext: "
            f"{_n(k.get('wrk_plaintext_rps'))} req/s)"
        )
    for e in res.get("errors", []):
        first = e.strip().splitlines()[0] if e.strip() else "(no message)"
        lines.append(f"  FAILED {first}")
    for w in res.get("warnings", []):
        lines.append(f"  warning: {w}")
    return "\n".join(lines) + "\n"
