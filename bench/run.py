"""Run the benchmark: Isthmus, nginx and HAProxy side by side on the same pinned core.

Usage (from the repository root)::

    .venv/bin/python -m bench                      # ~10 s per load, all three proxies
    .venv/bin/python -m bench --smoke              # ~2 s per load (CI)
    .venv/bin/python -m bench --only nginx,haproxy # without Isthmus

One run starts a shared nginx upstream (core 1), measures the direct h2c
latency baseline, then for each proxy in turn: starts it pinned to core 0,
checks that HTTP/1.1 and h2c requests reach the upstream through it, runs the
three loads from core 1, reads the peak RSS of its processes, and stops it.
The table goes to stdout, progress to stderr, the numbers to
``bench/results/<timestamp>.json`` and ``bench/results/latest.json``.

Exit status: 0 when everything ran (whether targets PASS or MISS), 1 when a
server or a load failed to run, 2 for a bad command line or missing tools,
130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import configs, federation_bench, loads, pki_bench, report, resilience
from bench.procs import (
    BenchError,
    Proc,
    Supervisor,
    core_busy_pct,
    core_times,
    cpu_seconds,
    free_ports,
    memory_of,
    require_tools,
    wait_http,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Binaries the benchmark runs, and the Debian package that provides each.
TOOLS = {"taskset": "util-linux", "wrk": "wrk", "h2load": "nghttp2-client", "nginx": "nginx"}

ISTHMUS_READY_TIMEOUT = 15.0
#: A core busier than this before the run starts means someone else is using the machine.
BACKGROUND_BUSY_WARN = 10.0
#: A throughput load during which neither the proxy's processes nor the load
#: generator + upstream used this much CPU was held back by something else.
SATURATED_PCT = 85.0
SERVER_READY_TIMEOUT = 10.0


def log(msg: str) -> None:
    """Progress goes to stderr so stdout carries only the table."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- arguments


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark Isthmus against nginx and HAProxy on the same pinned core.",
    )
    p.add_argument(
        "--duration", type=int, default=None, help="seconds per load (default 10, smoke 2)"
    )
    p.add_argument(
        "--smoke", action="store_true", help="short run for CI: 2 s per load, 1 s warm-up"
    )
    p.add_argument("--warmup", type=int, default=None, help="warm-up seconds before each load")
    p.add_argument(
        "--only",
        default=",".join(report.PROXIES),
        help="comma-separated subset of isthmus,nginx,haproxy (default: all)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each load N times and keep the median run (default 1)",
    )
    p.add_argument("--rate", type=int, default=1000, help="total req/s of the latency load")
    p.add_argument(
        "--burst",
        action="store_true",
        help="latency load: h2load -D with all 10 connections firing together "
        "(default: connections started 1 ms apart so requests arrive evenly)",
    )
    p.add_argument("--proxy-cpu", type=int, default=0, help="core for the proxies (default 0)")
    p.add_argument(
        "--load-cpu", type=int, default=1, help="core for load generator + upstream (default 1)"
    )
    p.add_argument(
        "--isthmus-tree",
        type=Path,
        default=None,
        help="run Isthmus from this source tree (e.g. the mypyc build of `make compiled`)",
    )
    p.add_argument(
        "--no-resilience",
        action="store_true",
        help="skip the telemetry-overhead and retries-under-failure runs",
    )
    p.add_argument(
        "--no-pki",
        action="store_true",
        help="skip the PKI and mTLS benchmarks (CSR signing, handshakes, mTLS keep-alive)",
    )
    p.add_argument(
        "--only-pki",
        action="store_true",
        help="run only the PKI and mTLS benchmarks (with the shared upstream)",
    )
    p.add_argument(
        "--no-federation",
        action="store_true",
        help="skip the federation scale bench (10,000 services across 3 clusters)",
    )
    p.add_argument(
        "--only-federation",
        action="store_true",
        help="run only the federation scale bench (bench/federation_bench.py)",
    )
    p.add_argument("--fed-services", type=int, default=None,
                   help="federation bench: services in all (default 10000, smoke 300)")  # fmt: skip
    p.add_argument("--fed-profile", type=int, default=0, metavar="S",
                   help="federation bench: py-spy the subscribed controller for S s")  # fmt: skip
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help=argparse.SUPPRESS)
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 2 if args.smoke else 10
    if args.warmup is None:
        args.warmup = 1
    only = [name.strip().lower() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(report.PROXIES))
    if unknown or not only:
        p.error(f"--only: unknown proxy {', '.join(unknown) or '(none)'}; "
                f"choose from {','.join(report.PROXIES)}")  # fmt: skip
    args.only = [name for name in report.PROXIES if name in only]
    if args.duration < 1 or args.warmup < 0 or args.rate < 10 or args.repeat < 1:
        p.error("--duration and --repeat must be >= 1, --warmup >= 0, --rate >= 10")
    return args


def background_busy(seconds: float = 1.0) -> dict[int, float]:
    """Busy % of each core over ``seconds`` before anything of ours runs."""
    before = core_times()
    time.sleep(seconds)
    return core_busy_pct(before, core_times())


def check_cpus(proxy_cpu: int, load_cpu: int) -> None:
    usable = os.sched_getaffinity(0)
    for cpu in (proxy_cpu, load_cpu):
        if cpu not in usable:
            raise BenchError(
                f"core {cpu} is not available (usable: {sorted(usable)}); "
                "choose others with --proxy-cpu / --load-cpu"
            )
    if proxy_cpu == load_cpu:
        log(f"warning: proxies and load generator share core {proxy_cpu}; numbers will be low")


# ------------------------------------------------------------------------ servers


@dataclass
class Running:
    """A started proxy and where to send traffic."""

    proc: Proc
    h1_url: str
    h2c_url: str
    admin: str = ""


def _nginx_argv(tmp: Path, conf: Path, name: str) -> list[str]:
    return [
        "nginx", "-p", str(tmp), "-c", str(conf),
        "-e", str(tmp / f"{name}.error.log"), "-g", "daemon off;",
    ]  # fmt: skip


def start_upstream(sup: Supervisor, tmp: Path, cpu: int) -> tuple[Proc, int, int]:
    h1, h2 = free_ports(2)
    conf = tmp / "upstream.conf"
    conf.write_text(configs.upstream_nginx(tmp, h1, h2))
    proc = sup.start("upstream", _nginx_argv(tmp, conf, "upstream"), cpu)
    wait_http(f"http://127.0.0.1:{h1}/", proc, SERVER_READY_TIMEOUT, expect_body=configs.BODY)
    loads.h2c_check(f"http://127.0.0.1:{h2}/", cpu)
    return proc, h1, h2


def start_nginx(sup: Supervisor, tmp: Path, upstream_port: int, cpu: int) -> Running:
    h1, h2 = free_ports(2)
    conf = tmp / "nginx.conf"
    conf.write_text(configs.nginx_proxy(tmp, h1, h2, upstream_port))
    proc = sup.start("nginx", _nginx_argv(tmp, conf, "nginx"), cpu)
    return Running(proc, f"http://127.0.0.1:{h1}/", f"http://127.0.0.1:{h2}/")


def start_haproxy(sup: Supervisor, tmp: Path, upstream_port: int, cpu: int) -> Running:
    h1, h2 = free_ports(2)
    conf = tmp / "haproxy.cfg"
    conf.write_text(configs.haproxy_proxy(h1, h2, upstream_port))
    check = subprocess.run(
        ["haproxy", "-c", "-f", str(conf)], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        raise BenchError(f"haproxy rejected its config:\n{check.stdout}{check.stderr}")
    proc = sup.start("haproxy", ["haproxy", "-db", "-f", str(conf)], cpu)
    return Running(proc, f"http://127.0.0.1:{h1}/", f"http://127.0.0.1:{h2}/")


def start_isthmus(
    sup: Supervisor,
    tmp: Path,
    upstream_port: int,
    cpu: int,
    *,
    extra: dict[str, str] | None = None,
    tag: str = "",
) -> Running:
    """``extra`` adds YAML files to the configuration; ``tag`` names the run's directory."""
    port, admin = free_ports(2)
    confdir = tmp / (f"isthmus-config-{tag}" if tag else "isthmus-config")
    confdir.mkdir()
    files = configs.isthmus_config(port, upstream_port)
    files.update(extra or {})
    for name, text in files.items():
        (confdir / name).write_text(text)
    argv = [
        sys.executable, "-m", "isthmus", "gateway", "run", "--role", "ingress",
        "--config", str(confdir), "--admin", f"127.0.0.1:{admin}", "--workers", "1",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cwd = REPO
    if ISTHMUS_TREE is not None:
        # The compiled tree first on the path; the worker processes inherit it.
        cwd = ISTHMUS_TREE.resolve()
        env["PYTHONPATH"] = str(cwd)
    proc = sup.start(f"isthmus-{tag}" if tag else "isthmus", argv, cpu, cwd=cwd, env=env)
    wait_http(
        f"http://127.0.0.1:{admin}/ready",
        proc,
        ISTHMUS_READY_TIMEOUT,
        what="isthmus gateway (admin /ready)",
    )
    url = f"http://127.0.0.1:{port}/"
    return Running(proc, url, url, f"http://127.0.0.1:{admin}")


# Set from --isthmus-tree by main(); None runs the checkout itself.
ISTHMUS_TREE: Path | None = None

STARTERS: dict[str, Callable[[Supervisor, Path, int, int], Running]] = {
    "isthmus": start_isthmus,
    "nginx": start_nginx,
    "haproxy": start_haproxy,
}


# -------------------------------------------------------------------------- loads


def _children_cpu() -> float:
    """CPU seconds of our finished (waited-for) children, i.e. wrk and h2load runs."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measured(proc: Proc, upstream: Proc, load_cpu: int, fn: Callable[[], Any]) -> dict[str, Any]:
    """Run one load and add CPU figures to its result.

    * ``proxy_cpu_pct``: CPU time of the proxy's processes / wall time;
    * ``load_side_cpu_pct``: the same for the load generator(s) plus the upstream;
    * ``*_core_busy_pct``: how busy each core was, whoever used it (this also
      counts kernel softirq work for loopback traffic, and other programs).
    """
    before_pids = proc.tree()
    cpu0 = cpu_seconds(before_pids)
    load0 = _children_cpu() + cpu_seconds(upstream.tree())
    cores0 = core_times()
    t0 = time.monotonic()
    result = fn()
    elapsed = time.monotonic() - t0
    cores1 = core_times()
    load1 = _children_cpu() + cpu_seconds(upstream.tree())
    cpu1 = cpu_seconds(list(dict.fromkeys([*before_pids, *proc.tree()])))
    out: dict[str, Any] = result.as_dict()
    busy = core_busy_pct(cores0, cores1)
    out["proxy_cpu_pct"] = round(100.0 * max(0.0, cpu1 - cpu0) / elapsed, 1)
    out["load_side_cpu_pct"] = round(100.0 * max(0.0, load1 - load0) / elapsed, 1)
    out["proxy_core_busy_pct"] = busy.get(proc.cpu)
    out["load_core_busy_pct"] = busy.get(load_cpu)
    return out


def repeated(
    label: str,
    what: str,
    metric: str,
    times: int,
    fn: Callable[[], dict[str, Any]],
    proc: Proc | None = None,
) -> dict[str, Any]:
    """Run a load ``times`` times; keep the run with the median ``metric``.

    The kept run's dict gets ``runs``: the ``metric`` of every run, in order.
    """
    runs: list[dict[str, Any]] = []
    for i in range(times):
        if proc is not None and not proc.alive():
            raise BenchError(
                f"process exited ({proc.popen.returncode}) before {what}\n{proc.output_tail()}"
            )
        n = f" (run {i + 1}/{times})" if times > 1 else ""
        log(f"{label}: {what}{n}")
        runs.append(fn())
        log(f"{label}:   -> {_summary(runs[-1])}")
    ordered = sorted(runs, key=lambda r: float(r[metric]))
    kept = dict(ordered[(len(ordered) - 1) // 2])
    kept["runs"] = [r[metric] for r in runs]
    return kept


def bench_proxy(
    name: str,
    sup: Supervisor,
    tmp: Path,
    upstream: Proc,
    upstream_port: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Start one proxy, verify it, run the three loads, read its RSS, stop it."""
    label = report.LABELS[name]
    data: dict[str, Any] = {"errors": [], "warnings": []}
    try:
        log(f"{label}: starting on core {args.proxy_cpu}")
        running = STARTERS[name](sup, tmp, upstream_port, args.proxy_cpu)
    except BenchError as exc:
        log(f"{label}: FAILED to start:\n{exc}")
        data["errors"].append(f"did not start: {exc}")
        return data
    proc = running.proc
    data["pid"] = proc.pid
    data["command"] = proc.argv
    try:
        wait_http(running.h1_url, proc, SERVER_READY_TIMEOUT, expect_body=configs.BODY,
                  what=f"{label} HTTP/1.1 through to upstream")  # fmt: skip
        loads.h2c_check(running.h2c_url, args.load_cpu)
    except BenchError as exc:
        log(f"{label}: FAILED its first requests:\n{exc}")
        data["errors"].append(f"first requests failed: {exc}")
        sup.stop(proc)
        return data
    d, w, lc = args.duration, args.warmup, args.load_cpu
    steps: list[tuple[str, str, str, Callable[[], Any]]] = [
        ("http1", "rps", f"HTTP/1.1 wrk -t1 -c50 {d}s",
         lambda: loads.http1_throughput(running.h1_url, d, w, lc)),
        ("h2c", "rps", f"h2c h2load -c10 -m10 {d}s",
         lambda: loads.h2c_throughput(running.h2c_url, d, w, lc)),
        ("latency", "p99_ms", f"h2c latency @ {args.rate} req/s {d}s",
         lambda: loads.fixed_rate_latency(running.h2c_url, d, w, lc, args.rate, burst=args.burst)),
    ]  # fmt: skip
    try:
        for key, metric, what, fn in steps:
            try:
                data[key] = repeated(
                    label,
                    what,
                    metric,
                    args.repeat,
                    functools.partial(measured, proc, upstream, lc, fn),
                    proc,
                )
                if metric == "rps" and not saturated(data[key]):
                    data[key]["interfered"] = True
                    data["warnings"].append(
                        f"{what}: neither the proxy ({data[key]['proxy_cpu_pct']:.0f}% CPU) "
                        f"nor load generator + upstream ({data[key]['load_side_cpu_pct']:.0f}% "
                        "CPU) used its core fully; another process probably interfered "
                        "(rerun, or use --repeat 3)"
                    )
            except BenchError as exc:
                data[key] = {"error": str(exc)}
                data["errors"].append(f"{what}: {exc}")
                log(f"{label}: {what} FAILED:\n{exc}")
                if not proc.alive():
                    break
        mem = memory_of(proc.tree())
        if mem:
            # Workers are the main process's descendants (nginx's worker, Isthmus's
            # worker processes); a proxy without children (HAProxy) is its own worker.
            workers = [m for m in mem if m.pid != proc.pid] or mem
            data["rss"] = {
                "total_mb": round(sum(m.vm_hwm_kib for m in mem) / 1024, 1),
                "main_process_mb": round(
                    sum(m.vm_hwm_kib for m in mem if m.pid == proc.pid) / 1024, 1
                ),
                "max_worker_mb": round(max(m.vm_hwm_kib for m in workers) / 1024, 1),
                "max_process_mb": round(max(m.vm_hwm_kib for m in mem) / 1024, 1),
                "workers": len(workers),
                "processes": [m.__dict__ for m in mem],
            }
            unpinned = [m for m in mem if m.cpus != [args.proxy_cpu]]
            if unpinned:
                where = ", ".join(f"{m.name}[{m.pid}]={m.cpus}" for m in unpinned)
                data["warnings"].append(f"not pinned to core {args.proxy_cpu}: {where}")
    finally:
        log(f"{label}: stopping")
        sup.stop(proc)
    return data


def saturated(result: dict[str, Any]) -> bool:
    """Whether our own processes used up the proxy core or the load core."""
    return bool(
        result.get("proxy_cpu_pct", 0) >= SATURATED_PCT
        or result.get("load_side_cpu_pct", 0) >= SATURATED_PCT
    )


def _summary(result: dict[str, Any]) -> str:
    if "p99_ms" in result:
        return (f"p50 {result['p50_ms']:.3f} ms, p99 {result['p99_ms']:.3f} ms "
                f"({result['samples']} samples, {result['achieved_rps']:.0f} req/s)")  # fmt: skip
    r = result
    return (
        f"{r['rps']:,.0f} req/s; CPU %: proxy {r['proxy_cpu_pct']:.0f}, load gen + upstream "
        f"{r['load_side_cpu_pct']:.0f}; core busy %: "
        f"{r['proxy_core_busy_pct']:.0f} / {r['load_core_busy_pct']:.0f}"
    )


# --------------------------------------------------------------------------- main


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, argv in {
        "nginx": ["nginx", "-v"],
        "haproxy": ["haproxy", "-v"],
        "wrk": ["wrk", "-v"],
        "h2load": ["h2load", "--version"],
    }.items():
        if shutil.which(argv[0]) is None:
            continue
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        text = (done.stdout + done.stderr).strip()
        out[name] = text.splitlines()[0] if text else "?"
    return out


class _Skip(Exception):
    """``--only-federation``: the other sections are skipped."""


def run_federation(
    sup: Supervisor, tmp: Path, args: argparse.Namespace, results: dict[str, Any]
) -> bool:
    """The federation scale bench (bench.federation_bench); returns whether it failed."""
    try:
        results["federation"] = federation_bench.run(sup, tmp, **federation_bench.options(args))
    except BenchError as exc:
        results["federation"] = {"error": str(exc)}
        log(f"federation bench FAILED:\n{exc}")
        return True
    return False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    global ISTHMUS_TREE
    args = parse_args(argv)
    if args.isthmus_tree is not None:
        if not (args.isthmus_tree / "gateway").is_dir():
            print(f"bench: --isthmus-tree {args.isthmus_tree}: no gateway/ there", file=sys.stderr)
            return 2
        ISTHMUS_TREE = args.isthmus_tree
    tools = {"taskset": TOOLS["taskset"]} if args.only_federation else dict(TOOLS)
    if "haproxy" in args.only and not args.only_federation:
        tools["haproxy"] = "haproxy"
    try:
        require_tools(tools)
        check_cpus(args.proxy_cpu, args.load_cpu)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2

    # Ctrl-C must reach us even if the parent started us with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # respect nohup
        signal.signal(signal.SIGHUP, _on_signal)
    now = datetime.now(UTC)
    results: dict[str, Any] = {
        "timestamp": now.strftime("%Y%m%dT%H%M%SZ"),
        "meta": {
            "time": now.isoformat(timespec="seconds"),
            "duration": args.duration,
            "warmup": args.warmup,
            "smoke": args.smoke,
            "rate": args.rate,
            "repeat": args.repeat,
            "latency_arrivals": "burst" if args.burst else "staggered",
            "proxy_cpu": args.proxy_cpu,
            "load_cpu": args.load_cpu,
            "only": args.only,
            "host": platform.node(),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "versions": _versions(),
        },
        "direct": {},
        "proxies": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="isthmus-bench-"))
    sup = Supervisor(tmp)
    failed = False
    try:
        background = background_busy()
        results["meta"]["background_busy_pct"] = background
        if any(v > BACKGROUND_BUSY_WARN for v in background.values()):
            log(f"warning: the machine is not idle before the run (core busy %: {background}); "
                "other processes will skew the numbers")  # fmt: skip
        log(f"temp dir {tmp}")
        if args.only_federation:
            failed = run_federation(sup, tmp, args, results)
            raise _Skip
        log(f"upstream nginx: starting on core {args.load_cpu}")
        try:
            upstream, up_h1, up_h2 = start_upstream(sup, tmp, args.load_cpu)
        except BenchError as exc:
            print(f"bench: the upstream did not start:\n{exc}", file=sys.stderr)
            return 1
        if not args.only_pki:
            try:
                direct_url = f"http://127.0.0.1:{up_h2}/"
                results["direct"] = repeated(
                    "direct",
                    f"h2c latency @ {args.rate} req/s {args.duration}s",
                    "p99_ms",
                    args.repeat,
                    lambda: loads.fixed_rate_latency(
                        direct_url,
                        args.duration,
                        args.warmup,
                        args.load_cpu,
                        args.rate,
                        burst=args.burst,
                    ).as_dict(),
                )
            except BenchError as exc:
                results["direct"] = {"error": str(exc)}
                failed = True
                log(f"direct baseline FAILED:\n{exc}")
        for name in [] if args.only_pki else args.only:
            results["proxies"][name] = bench_proxy(name, sup, tmp, upstream, up_h1, args)
            if results["proxies"][name]["errors"]:
                failed = True
        if "isthmus" in args.only and not args.no_resilience and not args.only_pki:
            try:
                results["resilience"] = resilience.run(
                    sup, tmp, up_h1, start_isthmus, duration=args.duration,
                    warmup=args.warmup, repeat=args.repeat, proxy_cpu=args.proxy_cpu,
                    load_cpu=args.load_cpu,
                )  # fmt: skip
            except BenchError as exc:
                results["resilience"] = {"error": str(exc)}
                failed = True
                log(f"resilience benchmarks FAILED:\n{exc}")
        if ("isthmus" in args.only or args.only_pki) and not args.no_pki:
            try:
                results["pki"] = pki_bench.run(
                    sup, tmp, upstream, up_h1, isthmus_tree=ISTHMUS_TREE,
                    duration=args.duration, warmup=args.warmup, repeat=args.repeat,
                    proxy_cpu=args.proxy_cpu, load_cpu=args.load_cpu, smoke=args.smoke,
                )  # fmt: skip
                failed = failed or bool(results["pki"]["errors"])
            except BenchError as exc:
                results["pki"] = {"error": str(exc)}
                failed = True
                log(f"PKI benchmarks FAILED:\n{exc}")
        if not args.no_federation and not args.only_pki:
            failed = run_federation(sup, tmp, args, results) or failed
    except _Skip:
        pass
    except KeyboardInterrupt:
        log("interrupted; stopping servers")
        return 130
    finally:
        sup.stop_all()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    report.derive(results)
    if args.only_federation:
        args.only_pki = True  # the proxy table has nothing to show
    if not args.only_pki:
        print(report.render(results), end="")
    if "error" not in results.get("resilience", {"error": ""}):
        print(resilience.render(results["resilience"]), end="")
    if "error" not in results.get("pki", {"error": ""}):
        print(pki_bench.render(results["pki"]), end="")
    if "federation" in results:
        print(federation_bench.render(results["federation"]), end="")
    path = report.write_json(results, args.results_dir)
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    print(f"\nresults: {shown} (and latest.json)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
