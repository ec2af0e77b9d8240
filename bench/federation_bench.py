"""The federation scale bench (issue 5): 10,000 services across 3 clusters.

Run by ``bench.run`` (``make bench``; ``--no-federation`` skips it, ``--federation-only``
runs nothing else) or alone: ``python -m bench.federation_bench [--smoke] [--services N]``.
``--no-latency`` (or ``--changes 0``) stops after the import convergence (a run of well under a
minute at 10,000 services), with each controller's VmHWM at every convergence milestone.

Processes (all real; cores as in the proxy comparison):

- the embedded catalog, ``isthmus catalog serve`` (load core; no ``--data`` file);
- ``bench.federation_kube``: one Kubernetes API double per cluster (load core), filled before
  the controllers start. The controllers read them through the official ``kubernetes``
  client, list then watch, which is the production path: the directory source would add its
  1 s polling interval to every change and measure that instead;
- three ``isthmus federation run --kubeconfig`` controllers, ``east``, ``west``, ``north``
  (all three on the proxy core: on a two-core machine they share it, which slows the import
  convergence compared with three clusters on three machines);
- this process, pinned to the load core during the latency phase: 100 simulated proxies
  (``bench.federation_proxies``) long-polling the ``east`` controller.

Figures:

1. **Import convergence**: from the moment the controllers are started (the API doubles
   already hold every object, the catalog is empty) until every controller's
   ``isthmus_federation_imported_services`` holds all the other clusters' services; also
   per controller when its sources synced and its exports were written, and when the
   subscribed proxies' snapshot held every imported service. Target: under 10 s.
2. **Change to applied**: ``--changes`` writes to the API doubles, ``--spacing`` apart, cycling
   an EndpointSlice scale in ``east``, a new ServiceExport in another cluster, and a deleted
   one (``bench.federation_data``); for each (change, proxy) the time from the write to the
   proxy holding a decoded snapshot that shows the change. p50/p99 over all pairs. Target:
   p99 under 1 s.
3. **Controller RSS**: peak (``VmHWM``) of each controller process. Target: under 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from bench.federation_data import changes as make_changes
from bench.federation_data import extras_needed, shares
from bench.federation_proxies import Fleet
from bench.procs import (
    BenchError,
    Proc,
    Supervisor,
    cpu_seconds,
    free_ports,
    http_get,
    memory_of,
    pinned,
    wait_http,
)
from gateway.process import eventloop

REPO = Path(__file__).resolve().parent.parent
CLUSTERS = ("east", "west", "north")
GATEWAYS = {"east": "10.0.1.1", "west": "10.0.2.1", "north": "10.0.3.1"}
TARGET_CONVERGENCE_S = 10.0
TARGET_P99_S = 1.0
TARGET_RSS_MB = 300.0


def log(msg: str) -> None:
    print(f"[bench] federation: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------- processes


def _env(tree: Path | None) -> tuple[Path, dict[str, str]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if tree is None:
        return REPO, env
    env["PYTHONPATH"] = str(tree.resolve())
    return tree.resolve(), env


class KubeHost:
    """The ``bench.federation_kube`` process and its command pipe."""

    def __init__(self, sup: Supervisor, tmp: Path, cpu: int, services: int, extras: int) -> None:
        err = tmp / "kube.stderr"
        argv = pinned([sys.executable, "-m", "bench.federation_kube",
                       "--clusters", ",".join(CLUSTERS), "--services", str(services),
                       "--extras", str(extras), "--dir", str(tmp)], cpu)  # fmt: skip
        with err.open("wb") as errf:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf, cwd=REPO,
                env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True,
            )  # fmt: skip
        # Tracked by the supervisor, so that stop_all() stops it too.
        self.proc = Proc("kube", self.popen, cpu, tmp / "kube.stdout", err, argv)
        sup.procs.append(self.proc)

    def _read(self, timeout_s: float) -> dict[str, Any]:
        out: IO[bytes] | None = self.popen.stdout
        assert out is not None
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(out, selectors.EVENT_READ)
        try:
            if not sel.select(timeout_s):
                raise BenchError(f"the Kubernetes doubles did not answer within {timeout_s:.0f}s")
        finally:
            sel.close()
        line = out.readline()
        if not line:
            raise BenchError(f"the Kubernetes doubles exited:\n{self.proc.output_tail()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ready(self, timeout_s: float) -> dict[str, Any]:
        return self._read(timeout_s)

    def command(self, cmd: dict[str, Any]) -> float:
        """Send one write; returns its monotonic write time."""
        assert self.popen.stdin is not None
        self.popen.stdin.write((json.dumps(cmd) + "\n").encode())
        self.popen.stdin.flush()
        reply = self._read(30.0)
        if not reply.get("ok"):
            raise BenchError(f"the Kubernetes double refused {cmd['op']}: {reply.get('error')}")
        return float(reply["t"])


def metrics(url: str) -> dict[str, float]:
    status, body = http_get(f"{url}/metrics", timeout=10.0)
    if status != 200:
        raise BenchError(f"{url}/metrics answered {status}")
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        m = re.match(r"^isthmus_federation_(\w+?)(?:_total)?(?:\{[^}]*\})? (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


# ------------------------------------------------------------------------ the phases


def converge(
    ctls: dict[str, Proc],
    urls: dict[str, str],
    counts: dict[str, int],
    t0: float,
    timeout_s: float,
) -> dict[str, Any]:
    """Poll every controller's /metrics until each imports every other cluster's services."""
    total = sum(counts.values())
    expected = {c: total - counts[c] for c in counts}
    per: dict[str, dict[str, Any]] = {c: {"expected_imports": expected[c]} for c in counts}
    timeline: list[dict[str, Any]] = []
    last_log = 0.0
    deadline = t0 + timeout_s
    while True:
        now = time.monotonic()
        sample: dict[str, Any] = {"t": round(now - t0, 2)}
        for c, url in urls.items():
            if not ctls[c].alive():
                raise BenchError(f"controller {c} exited:\n{ctls[c].output_tail()}")
            try:
                m = metrics(url)
            except (OSError, BenchError, urllib.error.URLError):
                continue
            d = per[c]
            t = round(time.monotonic() - t0, 3)
            hwm = _hwm_mb(ctls[c])
            if m.get("sources_synced") == 1.0 and "synced_s" not in d:
                d["synced_s"] = t
                d["synced_hwm_mb"] = hwm
            if m.get("consul_writes_register_service", 0) >= counts[c] and "exported_s" not in d:
                d["exported_s"] = t
                d["exported_hwm_mb"] = hwm
            imported = int(m.get("imported_services", 0))
            d["imported"] = imported
            d["import_errors"] = m.get("consul_import_errors", 0)
            if imported >= expected[c] and "imported_s" not in d:
                d["imported_s"] = t
                d["imported_hwm_mb"] = hwm
            sample[c] = imported
        timeline.append(sample)
        if now - last_log > 5:
            last_log = now
            log(f"t+{now - t0:.0f}s imports " + ", ".join(
                f"{c} {per[c].get('imported', 0)}/{expected[c]}" for c in counts))  # fmt: skip
        if all("imported_s" in per[c] for c in counts):
            break
        if now > deadline:
            break
        time.sleep(0.2)
    done = [per[c]["imported_s"] for c in counts if "imported_s" in per[c]]
    return {
        "converged": len(done) == len(counts),
        "seconds": max(done) if len(done) == len(counts) else None,
        "timeout_s": timeout_s,
        "controllers": per,
        "timeline": timeline[:: max(1, len(timeline) // 200)],
    }


def _hwm_mb(proc: Proc) -> float | None:
    """The process's peak RSS so far (VmHWM), in MB."""
    mem = memory_of([proc.pid])
    return round(mem[0].vm_hwm_kib / 1024, 1) if mem else None


async def latency_phase(
    kube: KubeHost,
    url: str,
    proxies: int,
    changes: list[Any],
    expected_clustersets: int,
    spacing_s: float,
    change_timeout_s: float,
    t0: float,
) -> dict[str, Any]:
    fleet = Fleet(url, proxies)
    out: dict[str, Any] = {"proxies": proxies, "changes": []}
    await fleet.start()
    try:
        t_sub = time.monotonic()
        at = await fleet.wait_clustersets(expected_clustersets, 120.0)
        out["subscribe_s"] = round(at - t_sub, 3) if at is not None else None
        out["snapshot_converged_s"] = round(at - t0, 3) if at is not None else None
        if at is None:
            counts = sorted({p.clustersets for p in fleet.proxies})
            raise BenchError(f"the proxies' snapshots never held all {expected_clustersets} "
                             f"imported services (they hold {counts})")  # fmt: skip
        log(f"{proxies} proxies hold the full snapshot ({fleet.bytes_max / 1e6:.1f} MB), "
            f"{out['snapshot_converged_s']}s after the start")  # fmt: skip
        await asyncio.sleep(spacing_s)
        for i, change in enumerate(changes):
            t_write = await asyncio.to_thread(kube.command, change.command())
            armed = fleet.arm(i, change, t_write)
            try:
                await asyncio.wait_for(armed.done.wait(), change_timeout_s)
            except TimeoutError:
                pass
            fleet.armed = None
            dec = sorted(armed.decoded.values())
            rec = sorted(armed.received.values())
            entry = {
                "change": change.describe(),
                "kind": change.kind,
                "reached": len(dec),
                "decoded_s": [round(v, 4) for v in dec],
                "received_s": [round(v, 4) for v in rec],
            }
            out["changes"].append(entry)
            worst = f"{dec[-1] * 1000:.0f} ms" if dec else "-"
            log(f"change {i + 1}/{len(changes)} {change.describe()}: {len(dec)}/{proxies} "
                f"proxies, first {dec[0] * 1000 if dec else 0:.0f} ms, last {worst}")  # fmt: skip
            await asyncio.sleep(spacing_s)
        out["snapshot_bytes_max"] = fleet.bytes_max
        out["deltas_applied"] = fleet.deltas
        out["delta_bytes_max"] = fleet.delta_bytes_max
        if fleet.decode_s:
            ds = sorted(fleet.decode_s)
            out["decode_ms_p50"] = round(1000 * ds[len(ds) // 2], 2)
            out["decode_ms_max"] = round(1000 * ds[-1], 2)
        out["proxy_errors"] = sum(p.errors for p in fleet.proxies)
    finally:
        await fleet.stop()
    return out


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summarize(lat: dict[str, Any]) -> dict[str, Any]:
    """p50/p99 over all (change, proxy) pairs; a pair never reached counts as a miss."""
    decoded = [v for c in lat["changes"] for v in c["decoded_s"]]
    received = [v for c in lat["changes"] for v in c["received_s"]]
    pairs = len(lat["changes"]) * lat["proxies"]
    missing = pairs - len(decoded)
    # A missing pair is slower than any measured one: put it at +inf for the percentile.
    full = decoded + [float("inf")] * missing
    out: dict[str, Any] = {"pairs": pairs, "missing": missing}
    for name, vals in (("decoded", full), ("received", received)):
        for q in (50, 90, 99):
            v = percentile(vals, q)
            out[f"{name}_p{q}_s"] = None if v is None or v == float("inf") else round(v, 4)
        out[f"{name}_max_s"] = round(max(vals), 4) if vals and max(vals) != float("inf") else None
    by_kind: dict[str, list[float]] = {}
    for c in lat["changes"]:
        by_kind.setdefault(c["kind"], []).extend(c["decoded_s"])
    out["by_kind_p99_s"] = {k: round(percentile(v, 99) or 0.0, 4) for k, v in by_kind.items()}
    return out


# ------------------------------------------------------------------------------- run


def run(
    sup: Supervisor,
    tmp: Path,
    *,
    services: int = 10_000,
    proxies: int = 100,
    n_changes: int = 30,
    spacing_s: float = 1.5,
    converge_timeout_s: float = 900.0,
    change_timeout_s: float = 15.0,
    proxy_cpu: int = 0,
    load_cpu: int = 1,
    isthmus_tree: Path | None = None,
    profile_s: int = 0,
) -> dict[str, Any]:
    """The whole federation bench; raises BenchError when something could not run."""
    tmp = tmp / "federation"
    tmp.mkdir(parents=True, exist_ok=True)
    counts_list = shares(services, len(CLUSTERS))
    counts = dict(zip(CLUSTERS, counts_list, strict=True))
    result: dict[str, Any] = {
        "services": services, "clusters": list(CLUSTERS), "per_cluster": counts,
        "proxies": proxies, "changes_planned": n_changes, "spacing_s": spacing_s,
        "layout": {"controllers_cpu": proxy_cpu, "catalog_kube_proxies_cpu": load_cpu},
        "loadavg_before": os.getloadavg(),
    }  # fmt: skip
    cwd, env = _env(isthmus_tree)
    cat_port, *ctl_ports = free_ports(1 + len(CLUSTERS))
    catalog = sup.start(
        "catalog",
        [sys.executable, "-m", "isthmus", "catalog", "serve", "--listen",
         f"127.0.0.1:{cat_port}"],
        load_cpu, cwd=cwd, env=env,
    )  # fmt: skip
    catalog_url = f"http://127.0.0.1:{cat_port}"
    wait_http(f"{catalog_url}/v1/status/leader", catalog, 20.0, what="isthmus catalog serve")
    log(f"filling {len(CLUSTERS)} Kubernetes API doubles with {services:,} services")
    kube = KubeHost(sup, tmp, load_cpu, services, extras_needed(n_changes))
    info = kube.ready(300.0)
    result["kube_fill_s"] = info.get("fill_s")
    ctls: dict[str, Proc] = {}
    urls: dict[str, str] = {}
    t0 = time.monotonic()
    result["t0_unix"] = time.time()  # to read the controllers' log timestamps against
    for cluster, port in zip(CLUSTERS, ctl_ports, strict=True):
        argv = [sys.executable, "-m", "isthmus", "federation", "run", "--cluster", cluster,
                "--catalog", catalog_url, "--kubeconfig", str(tmp / f"{cluster}.kubeconfig"),
                "--listen", f"127.0.0.1:{port}", "--gateway", f"{GATEWAYS[cluster]}:15443",
                "--locality", f"{cluster}/z1", "--replica-id", f"{cluster}-bench"]  # fmt: skip
        ctls[cluster] = sup.start(f"controller-{cluster}", argv, proxy_cpu, cwd=cwd, env=env)
        urls[cluster] = f"http://127.0.0.1:{port}"
    log(f"controllers started; waiting for the imports (up to {converge_timeout_s:.0f}s)")
    for cluster, url in urls.items():
        wait_http(f"{url}/metrics", ctls[cluster], 30.0, what=f"controller {cluster}")
    result["convergence"] = converge(ctls, urls, counts, t0, converge_timeout_s)
    conv = result["convergence"]
    log(f"import convergence: {conv['seconds']}s" if conv["converged"]
        else f"imports did not converge within {converge_timeout_s:.0f}s")  # fmt: skip
    cpu_after_converge = {c: cpu_seconds(p.tree()) for c, p in ctls.items()}
    result["controller_cpu_s_converge"] = {c: round(v, 2) for c, v in cpu_after_converge.items()}
    subscribed = CLUSTERS[0]
    if conv["converged"] and n_changes > 0:
        expected_clustersets = services - counts[subscribed]
        changes = make_changes(list(CLUSTERS), counts_list, n_changes)
        profiler = _start_profile(ctls[subscribed], tmp, profile_s)
        affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {load_cpu})
        try:
            # uvloop: the 100 proxies share one process on one core (real ones each have
            # their own), so the harness's own HTTP overhead should weigh as little as it can.
            lat = eventloop.run(latency_phase(
                kube, urls[subscribed], proxies, changes, expected_clustersets, spacing_s,
                change_timeout_s, t0))  # fmt: skip
        finally:
            os.sched_setaffinity(0, affinity)
        if profiler is not None:
            result["profile"] = _finish_profile(profiler, tmp)
        result["latency"] = lat
        result["latency_summary"] = summarize(lat)
        result["controller_cpu_s_latency"] = {
            c: round(cpu_seconds(p.tree()) - cpu_after_converge[c], 2) for c, p in ctls.items()
        }
    mem = {c: memory_of([p.pid]) for c, p in ctls.items()}
    result["rss"] = {
        c: {"vm_hwm_mb": round(m[0].vm_hwm_kib / 1024, 1),
            "vm_rss_mb": round(m[0].vm_rss_kib / 1024, 1)}
        for c, m in mem.items() if m
    }  # fmt: skip
    cm = memory_of([catalog.pid])
    if cm:
        result["catalog_rss_mb"] = round(cm[0].vm_hwm_kib / 1024, 1)
    for c, p in ctls.items():
        result.setdefault("controller_final", {})[c] = _final_metrics(urls[c], p)
    result["loadavg_after"] = os.getloadavg()
    for p in [*ctls.values(), kube.proc, catalog]:
        sup.stop(p)
    result["targets"] = targets(result)
    return result


def _final_metrics(url: str, proc: Proc) -> dict[str, float]:
    if not proc.alive():
        return {}
    try:
        m = metrics(url)
    except (OSError, BenchError, urllib.error.URLError):
        return {}
    keep = ("imported_services", "consul_import_errors", "consul_import_queries",
            "consul_writes_register_service", "consul_export_errors", "recompiles", "pushes",
            "push_latency_seconds_max", "consul_sync_lag_max_seconds")  # fmt: skip
    return {k: m[k] for k in keep if k in m}


def _start_profile(proc: Proc, tmp: Path, seconds: int) -> subprocess.Popen[bytes] | None:
    spy = REPO / ".venv" / "bin" / "py-spy"
    if seconds <= 0 or not spy.exists():
        return None
    out = tmp / "controller-east.pyspy.txt"
    return subprocess.Popen(
        [str(spy), "record", "--gil", "-p", str(proc.pid), "-d", str(seconds), "-f", "raw",
         "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _finish_profile(spy: subprocess.Popen[bytes], tmp: Path) -> dict[str, Any]:
    try:
        spy.wait(60)
    except subprocess.TimeoutExpired:
        spy.kill()
    path = tmp / "controller-east.pyspy.txt"
    if not path.exists():
        return {"error": "py-spy wrote nothing"}
    return {"top_functions": top_functions(path.read_text())}


def top_functions(raw: str, limit: int = 15) -> list[tuple[str, float]]:
    """Self time share of the busiest functions in a py-spy raw (collapsed stacks) file."""
    self_time: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        leaf = stack.split(";")[-1]
        self_time[leaf] = self_time.get(leaf, 0) + n
    ranked = sorted(self_time.items(), key=lambda kv: -kv[1])[:limit]
    return [(name, round(100.0 * n / total, 1)) for name, n in ranked] if total else []


# -------------------------------------------------------------------------- targets


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    conv = res.get("convergence", {}).get("seconds")
    p99 = res.get("latency_summary", {}).get("decoded_p99_s")
    rss = max((v["vm_hwm_mb"] for v in res.get("rss", {}).values()), default=None)
    out = []
    for key, text, value, limit, unit in (
        ("convergence", "import convergence", conv, TARGET_CONVERGENCE_S, "s"),
        ("change_p99", f"change -> applied p99 at {res.get('proxies')} proxies", p99,
         TARGET_P99_S, "s"),
        ("controller_rss", "controller peak RSS (largest)", rss, TARGET_RSS_MB, "MB"),
    ):  # fmt: skip
        verdict = "n/a" if value is None else ("PASS" if value < limit else "MISS")
        if key == "convergence" and res.get("convergence", {}).get("converged") is False:
            value, verdict = res["convergence"]["timeout_s"], "MISS (did not converge)"
        out.append({"key": key, "text": text, "value": value, "limit": limit, "unit": unit,
                    "verdict": verdict})  # fmt: skip
    return out


def render(res: dict[str, Any]) -> str:
    if not res:
        return ""
    lines = ["", f"Federation scale ({res.get('services', 0):,} services across "
             f"{len(res.get('clusters', []))} clusters, {res.get('proxies')} proxies)"]  # fmt: skip
    if "error" in res:
        lines.append(f"  FAILED: {res['error']}")
        if "services" not in res:
            return f"\nFederation scale\n  FAILED: {res['error']}\n"
    for t in res.get("targets", []):
        value = "-" if t["value"] is None else f"{t['value']:.3f} {t['unit']}"
        lines.append(f"  {t['text']:<42} {value:>12}   target < {t['limit']:g} {t['unit']}: "
                     f"{t['verdict']}")  # fmt: skip
    conv = res.get("convergence", {})
    for c, d in conv.get("controllers", {}).items():
        lines.append(f"    {c}: sources synced {d.get('synced_s', '-')}s, exports written "
                     f"{d.get('exported_s', '-')}s, imports {d.get('imported', 0)}/"
                     f"{d['expected_imports']} at {d.get('imported_s', '-')}s; VmHWM at those "
                     f"{d.get('synced_hwm_mb', '-')}/{d.get('exported_hwm_mb', '-')}/"
                     f"{d.get('imported_hwm_mb', '-')} MB")  # fmt: skip
    lat = res.get("latency", {})
    if lat.get("snapshot_converged_s") is not None:
        lines.append(f"    full snapshot at every proxy {lat['snapshot_converged_s']}s after the "
                     f"start ({lat.get('snapshot_bytes_max', 0) / 1e6:.1f} MB, decode p50 "
                     f"{lat.get('decode_ms_p50', 0)} ms); then {lat.get('deltas_applied', 0)} "
                     f"deltas applied (largest "
                     f"{lat.get('delta_bytes_max', 0) / 1e3:.1f} kB)")  # fmt: skip
    s = res.get("latency_summary")
    if s:

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v * 1000:.0f} ms"

        lines.append(f"    change -> decoded: p50 {ms(s['decoded_p50_s'])}, p90 "
                     f"{ms(s['decoded_p90_s'])}, p99 {ms(s['decoded_p99_s'])} over "
                     f"{s['pairs']} pairs ({s['missing']} never reached); received p99 "
                     f"{ms(s['received_p99_s'])}")  # fmt: skip
        kinds = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in s["by_kind_p99_s"].items())
        lines.append(f"    p99 by change kind: {kinds}")
    rss = res.get("rss", {})
    if rss:
        text = ", ".join(f"{c} {v['vm_hwm_mb']:.0f} MB" for c, v in rss.items())
        if "catalog_rss_mb" in res:
            text += f"; catalog {res['catalog_rss_mb']:.0f} MB"
        lines.append(f"    controller peak RSS: {text}")
    lines.append(f"    load average before/after: {_load(res.get('loadavg_before'))} / "
                 f"{_load(res.get('loadavg_after'))}")  # fmt: skip
    return "\n".join(lines) + "\n"


def _load(v: Any) -> str:
    return "-" if not v else "/".join(f"{x:.2f}" for x in v)


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.federation_bench",
                                description="The federation scale bench alone.")  # fmt: skip
    p.add_argument("--smoke", action="store_true", help="300 services, 6 changes (CI)")
    p.add_argument("--services", type=int, default=None)
    p.add_argument("--proxies", type=int, default=100)
    p.add_argument(
        "--changes",
        type=int,
        default=None,
        help="0: convergence only (no latency phase); reports each controller's VmHWM",
    )
    p.add_argument("--no-latency", action="store_true", help="the same as --changes 0")
    p.add_argument("--spacing", type=float, default=1.5, help="seconds between changes")
    p.add_argument("--proxy-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--isthmus-tree", type=Path, default=None)
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="S",
        help="py-spy the subscribed controller for S seconds of the latency phase",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--keep-tmp", action="store_true")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="isthmus-fedbench-"))
    sup = Supervisor(tmp)
    try:
        res = run(sup, tmp, **options(args))
    except BenchError as exc:
        print(f"bench: federation: {exc}", file=sys.stderr)
        return 1
    finally:
        sup.stop_all()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(render(res), end="")
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


def options(args: argparse.Namespace) -> dict[str, Any]:
    """run() keyword arguments from a command line (this one or bench.run's)."""
    smoke = bool(getattr(args, "smoke", False))
    services = getattr(args, "fed_services", None) or getattr(args, "services", None)
    n_changes = getattr(args, "fed_changes", None)
    if n_changes is None:
        n_changes = getattr(args, "changes", None)
    if getattr(args, "no_latency", False):
        n_changes = 0  # convergence only
    return {
        "services": services or (300 if smoke else 10_000),
        "proxies": getattr(args, "fed_proxies", None) or getattr(args, "proxies", 100),
        "n_changes": (6 if smoke else 30) if n_changes is None else n_changes,
        "spacing_s": getattr(args, "spacing", 1.5) if smoke is False else 0.5,
        "converge_timeout_s": 60.0 if smoke else 900.0,
        "proxy_cpu": args.proxy_cpu,
        "load_cpu": args.load_cpu,
        "isthmus_tree": args.isthmus_tree,
        "profile_s": getattr(args, "profile", 0) or getattr(args, "fed_profile", 0),
    }


if __name__ == "__main__":
    sys.exit(main())
