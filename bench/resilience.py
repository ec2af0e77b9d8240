"""The resilience and telemetry benchmarks (issue 3), run after the proxy comparison.

* **Telemetry overhead.** Isthmus twice on the same upstream, HTTP/1.1 ``wrk -c50``: once
  with the access log off, once writing every request to a file (metrics are always on).
  The figure is the throughput ratio on/off; the target is at least 0.9.
* **Retries under failure.** An nginx upstream that answers 503 to half of the requests at
  random (``split_clients`` on ``$request_id``). Isthmus serves two hostnames to it: one
  with ``retry: {codes: [503], attempts: 2}`` and one without. For each, the success rate
  that ``wrk`` saw, and for the retrying one the extra load the retry budget let through:
  retries started / requests (from Isthmus's own metrics).

Called by ``bench.run``; the servers run on the same pinned cores as the comparison.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import configs, loads
from bench.procs import BenchError, Proc, Supervisor, free_ports, http_get, pinned, wait_http

FLAKY_SHARE = 50  # percent of upstream answers that are 503


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def flaky_upstream_conf(tmp: Path, port: int) -> str:
    main = configs._nginx_main(tmp, "flaky")
    common = configs._nginx_http_common(tmp, "flaky")
    return (
        f"{main}http {{\n{common}"
        f'    split_clients "${{request_id}}" $fail {{\n'
        f"        {FLAKY_SHARE}% 1;\n"
        "        * 0;\n"
        "    }\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        "        location / {\n"
        '            if ($fail) { return 503 "unavailable\\n"; }\n'
        '            return 200 "hello world\\n";\n'
        "        }\n"
        "    }\n"
        "}\n"
    )


def _extra_yaml(telemetry_log: Path | None) -> dict[str, str]:
    docs: dict[str, str] = {}
    if telemetry_log is not None:
        docs["settings.yaml"] = (
            "apiVersion: isthmus.dev/v1alpha1\nkind: ProxySettings\n"
            "metadata: {name: bench, namespace: default}\n"
            f"spec:\n  telemetry:\n    accessLog: {{path: {telemetry_log}}}\n"
        )
    return docs


def _retry_routes() -> str:
    return "---\n".join(
        f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  hostnames: [{name}.bench]
  rules:
  - backendRefs: [{{name: upstream, port: 80}}]
{retry}
"""
        for name, retry in (
            ("retry", "    retry: {codes: [503], attempts: 2, backoff: 1ms}"),
            ("noretry", ""),
        )
    )


def _wrk(url: str, duration: int, cpu: int, host: str | None = None) -> loads.Throughput:
    argv = ["wrk", "-t1", "-c50", f"-d{duration}s"]
    if host:
        argv += ["-H", f"Host: {host}"]
    return loads.parse_wrk(loads._run(pinned([*argv, url], cpu), duration + 30))


def _metric(admin: str, name: str, **labels: str) -> float:
    status, body = http_get(f"{admin}/metrics", timeout=10.0)
    if status != 200:
        raise BenchError(f"{admin}/metrics answered {status}")
    total = 0.0
    for line in body.decode().splitlines():
        m = re.match(r"^(\w+)(\{(.*)\})? (\S+)$", line)
        if m is None or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
    return total


def run(
    sup: Supervisor,
    tmp: Path,
    upstream_port: int,
    start_isthmus: Callable[..., Any],
    *,
    duration: int,
    warmup: int,
    repeat: int,
    proxy_cpu: int,
    load_cpu: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # -- telemetry on versus off ------------------------------------------------------
    # Both gateways run at once (the idle one costs nothing) and the runs alternate, off,
    # on, off, on..., so that drift in the machine's background load hits both alike.
    gateways = {
        label: start_isthmus(
            sup,
            tmp,
            upstream_port,
            proxy_cpu,
            extra=_extra_yaml(log_path),
            tag=f"telemetry-{label}",
        )
        for label, log_path in (("off", None), ("on", tmp / "access.log"))
    }
    rps: dict[str, float] = {}
    try:
        runs: dict[str, list[float]] = {"off": [], "on": []}
        for r in gateways.values():
            wait_http(r.h1_url, r.proc, 10.0, expect_body=configs.BODY)
            if warmup:
                _wrk(r.h1_url, warmup, load_cpu)
        for i in range(repeat):
            for label, r in gateways.items():
                log(f"telemetry {label}: HTTP/1.1 wrk -c50 {duration}s (run {i + 1}/{repeat})")
                runs[label].append(_wrk(r.h1_url, duration, load_cpu).rps)
                log(f"telemetry {label}:   -> {runs[label][-1]:,.0f} req/s")
        for label, values in runs.items():
            rps[label] = sorted(values)[(len(values) - 1) // 2]
    finally:
        for r in gateways.values():
            sup.stop(r.proc)
    lines = (tmp / "access.log").read_text().count("\n") if (tmp / "access.log").exists() else 0
    out["telemetry"] = {
        "off_rps": rps["off"],
        "on_rps": rps["on"],
        "ratio": rps["on"] / rps["off"] if rps["off"] else None,
        "access_log_lines": lines,
    }
    # -- retries against an upstream failing half the time --------------------------
    (port,) = free_ports(1)
    conf = tmp / "flaky.conf"
    conf.write_text(flaky_upstream_conf(tmp, port))
    flaky: Proc = sup.start(
        "flaky", ["nginx", "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "flaky.err"),
                  "-g", "daemon off;"], load_cpu)  # fmt: skip
    try:
        routes = {"retry-routes.yaml": _retry_routes()}
        running = start_isthmus(sup, tmp, port, proxy_cpu, extra=routes, tag="retries")
        try:
            wait_http(f"{running.admin}/ready", running.proc, 10.0)
            cluster = "default/upstream:80"
            for host in ("noretry", "retry"):
                req0 = _metric(running.admin, "istio_requests_total")
                ret0 = _metric(running.admin, "isthmus_upstream_retries_total",
                               cluster_name=cluster)  # fmt: skip
                log(f"retries: {host}.bench wrk -c50 {duration}s, upstream fails {FLAKY_SHARE}%")
                result = _wrk(running.h1_url, duration, load_cpu, host=f"{host}.bench")
                req = _metric(running.admin, "istio_requests_total") - req0
                ret = _metric(running.admin, "isthmus_upstream_retries_total",
                              cluster_name=cluster) - ret0  # fmt: skip
                success = 1.0 - result.bad / result.requests if result.requests else 0.0
                out[f"retries_{host}"] = {
                    "rps": result.rps,
                    "requests": result.requests,
                    "failed": result.bad,
                    "success_rate": success,
                    "retries": ret,
                    "extra_load": ret / req if req else 0.0,
                }
                log(f"retries: {host}: success {success:.1%}, extra load {ret / max(req, 1):.1%}")
        finally:
            sup.stop(running.proc)
    finally:
        sup.stop(flaky)
    return out


def render(res: dict[str, Any]) -> str:
    if not res:
        return ""
    t = res.get("telemetry", {})
    lines = ["", "Resilience and telemetry (Isthmus)"]
    if t:
        ratio = t.get("ratio") or 0.0
        verdict = "PASS" if ratio >= 0.9 else "MISS"
        lines.append(
            f"  telemetry (metrics + access log) on/off: {t['on_rps']:,.0f} / {t['off_rps']:,.0f}"
            f" req/s = {ratio:.2f}x  (target >= 0.90: {verdict}; {t['access_log_lines']:,} "
            "log lines)"
        )
    for host, label in (("noretry", "without retries"), ("retry", "with retries (2)")):
        r = res.get(f"retries_{host}")
        if r:
            lines.append(
                f"  upstream failing {FLAKY_SHARE}%, {label}: success {r['success_rate']:.1%}, "
                f"extra upstream load {r['extra_load']:.1%} ({r['rps']:,.0f} req/s)"
            )
    return "\n".join(lines) + "\n"
