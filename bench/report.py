"""Derived numbers, the stdout table, and the JSON files of a benchmark run.

The raw results are a plain dict (see :func:`bench.run.main`)::

    {"timestamp", "meta", "direct": {latency...} | {"error"},
     "proxies": {"isthmus"|"nginx"|"haproxy": {"errors": [...], "http1": {...},
                 "h2c": {...}, "latency": {...}, "rss": {...}}}}

:func:`derive` adds the added latency per proxy, the Isthmus/nginx and
Isthmus/HAProxy ratios, and the PASS/MISS verdict of each target.
:func:`render` turns everything into a table; :func:`write_json` stores it as
``bench/results/<timestamp>.json`` and ``bench/results/latest.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROXIES: tuple[str, ...] = ("isthmus", "nginx", "haproxy")
LABELS: dict[str, str] = {"isthmus": "Isthmus", "nginx": "nginx", "haproxy": "HAProxy"}

Results = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """One goal for Isthmus; ``value`` reads it from the derived results."""

    key: str
    text: str
    limit: float
    higher_is_better: bool
    unit: str
    value: Callable[[Results], float | None]
    #: (proxy, load) results the value depends on, checked for interference.
    inputs: tuple[tuple[str, str], ...] = ()


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _ratio(results: Results, load: str, other: str) -> float | None:
    mine = _get(results, "proxies", "isthmus", load, "rps")
    theirs = _get(results, "proxies", other, load, "rps")
    if mine is None or not theirs:
        return None
    return float(mine) / float(theirs)


TARGETS: tuple[Target, ...] = (
    Target(
        "http1_vs_nginx", "HTTP/1.1 throughput >= 0.8x nginx", 0.8, True, "x",
        lambda r: _ratio(r, "http1", "nginx"), (("isthmus", "http1"), ("nginx", "http1")),
    ),
    Target(
        "h2c_vs_nginx", "HTTP/2 throughput >= 0.3x nginx", 0.3, True, "x",
        lambda r: _ratio(r, "h2c", "nginx"), (("isthmus", "h2c"), ("nginx", "h2c")),
    ),
    Target(
        "added_p99", "added p99 at {rate} req/s <= 1 ms", 1.0, False, " ms",
        lambda r: _get(r, "proxies", "isthmus", "added", "p99_ms"),
    ),
    Target(
        "rss_per_worker", "peak RSS per worker <= 60 MB", 60.0, False, " MB",
        lambda r: _get(r, "proxies", "isthmus", "rss", "max_worker_mb"),
    ),
)  # fmt: skip


def derive(results: Results) -> None:
    """Add added latencies, ratios and target verdicts to ``results`` in place."""
    direct = results.get("direct") or {}
    for data in results["proxies"].values():
        lat = data.get("latency")
        if lat and "p50_ms" in lat and "p50_ms" in direct:
            data["added"] = {
                "p50_ms": round(lat["p50_ms"] - direct["p50_ms"], 3),
                "p99_ms": round(lat["p99_ms"] - direct["p99_ms"], 3),
            }
    ratios: dict[str, dict[str, float | None]] = {}
    for load in ("http1", "h2c"):
        ratios[load] = {
            "isthmus/nginx": _round(_ratio(results, load, "nginx"), 3),
            "isthmus/haproxy": _round(_ratio(results, load, "haproxy"), 3),
        }
    results["ratios"] = ratios
    verdicts = []
    for t in TARGETS:
        value = t.value(results)
        if value is None:
            status = "n/a"
        elif t.higher_is_better:
            status = "PASS" if value >= t.limit else "MISS"
        else:
            status = "PASS" if value <= t.limit else "MISS"
        suspect = any(
            _get(results, "proxies", proxy, load, "interfered") for proxy, load in t.inputs
        )
        verdicts.append(
            {
                "key": t.key,
                "target": t.text.format(rate=results["meta"]["rate"]),
                "limit": t.limit,
                "value": _round(value, 3),
                "status": status,
                "suspect": bool(suspect and value is not None),
            }
        )
    results["targets"] = verdicts


def _round(v: float | None, nd: int) -> float | None:
    return None if v is None else round(v, nd)


# -------------------------------------------------------------------------- table


def _fmt(v: Any, spec: str) -> str:
    if v is None:
        return "-"
    return format(v, spec)


def render(results: Results) -> str:
    """The human-readable report."""
    meta = results["meta"]
    present = [p for p in PROXIES if p in results["proxies"]]
    cols = [LABELS[p] for p in present]
    ratio_cols = []
    if "isthmus" in present:
        ratio_cols = [f"Isthmus/{LABELS[p]}" for p in present if p != "isthmus"]
    header = ["", *cols, *ratio_cols]
    rows: list[list[str]] = []

    def row(label: str, path: tuple[str, ...], spec: str, ratio: bool = False) -> None:
        cells = [_fmt(_get(results["proxies"][p], *path), spec) for p in present]
        extra: list[str] = []
        if ratio_cols:
            mine = _get(results["proxies"]["isthmus"], *path)
            for p in present:
                if p == "isthmus":
                    continue
                theirs = _get(results["proxies"][p], *path)
                extra.append(
                    f"{mine / theirs:.2f}x" if ratio and mine is not None and theirs else ""
                )
        rows.append([label, *cells, *extra])

    rate = meta["rate"]
    row("HTTP/1.1 req/s  (wrk -c50)", ("http1", "rps"), ",.0f", ratio=True)
    row("HTTP/2 req/s  (h2load 10x10)", ("h2c", "rps"), ",.0f", ratio=True)
    row(f"p50 ms @ {rate} req/s (h2c)", ("latency", "p50_ms"), ".3f")
    row(f"p99 ms @ {rate} req/s (h2c)", ("latency", "p99_ms"), ".3f")
    row("added p50 ms (vs direct)", ("added", "p50_ms"), "+.3f")
    row("added p99 ms (vs direct)", ("added", "p99_ms"), "+.3f")
    row("peak RSS, all processes MB", ("rss", "total_mb"), ".1f")
    row("peak RSS, main process MB", ("rss", "main_process_mb"), ".1f")
    row("peak RSS, largest worker MB", ("rss", "max_worker_mb"), ".1f")
    row("proxy CPU % during HTTP/1.1", ("http1", "proxy_cpu_pct"), ".0f")
    row("proxy CPU % during HTTP/2", ("h2c", "proxy_cpu_pct"), ".0f")
    row("load gen+upstream CPU % HTTP/1.1", ("http1", "load_side_cpu_pct"), ".0f")
    row("load gen+upstream CPU % HTTP/2", ("h2c", "load_side_cpu_pct"), ".0f")

    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    how = f"{meta['duration']} s per load"
    if meta.get("repeat", 1) > 1:
        how += f", median of {meta['repeat']} runs"
    if meta["smoke"]:
        how += ", smoke"
    lines = [
        f"Isthmus benchmark {results['timestamp']}  ({how}; "
        f"proxies on core {meta['proxy_cpu']}, load generator + upstream on core "
        f"{meta['load_cpu']})",
        "",
    ]
    sep = "  "
    for i, r in enumerate([header, *rows]):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append(sep.join(cells).rstrip())
        if i == 0:
            lines.append(sep.join("-" * w for w in widths))
    direct = results.get("direct") or {}
    if "p50_ms" in direct:
        lines.append("")
        lines.append(
            f"direct to upstream (h2c, no proxy) @ {rate} req/s: p50 {direct['p50_ms']:.3f} ms, "
            f"p99 {direct['p99_ms']:.3f} ms"
        )
    elif "error" in direct:
        lines.append(f"\ndirect baseline FAILED: {_first_line(direct['error'])}")

    if "isthmus" in present:
        lines.append("")
        lines.append("Targets (Isthmus):")
        tw = max(len(v["target"]) for v in results["targets"])
        for v in results["targets"]:
            t = next(t for t in TARGETS if t.key == v["key"])
            value = "-" if v["value"] is None else f"{v['value']:.2f}{t.unit}"
            note = "  (suspect: another process interfered, see warnings)" if v["suspect"] else ""
            lines.append(f"  {v['target'].ljust(tw)}  {value:>10}  {v['status']}{note}")

    problems = [(p, e) for p in present for e in results["proxies"][p].get("errors", [])]
    warnings = [(p, w) for p in present for w in results["proxies"][p].get("warnings", [])]
    if problems or warnings:
        lines.append("")
    for p, e in problems:
        lines.append(f"FAILED {LABELS[p]}: {_first_line(e)}")
    for p, w in warnings:
        lines.append(f"warning {LABELS[p]}: {w}")
    return "\n".join(lines) + "\n"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "(no message)"


# --------------------------------------------------------------------------- json


def write_json(results: Results, results_dir: Path) -> Path:
    """Write ``<timestamp>.json`` and ``latest.json``; return the timestamped path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, sort_keys=False) + "\n"
    path = results_dir / f"{results['timestamp']}.json"
    path.write_text(text)
    (results_dir / "latest.json").write_text(text)
    return path
