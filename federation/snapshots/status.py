"""Render ``GET /v1/proxies`` as the table ``isthmus federation status`` prints.

Called by the ``isthmus federation status`` command with the decoded JSON of the snapshot
server (``federation.snapshots.server``). One line per proxy: its id and role, the version
it should run, the version it runs, its state (``in sync``, ``pending``, ``refused``, ``no
snapshot``; ``disconnected`` is added when it has not polled for a while), when it was last
seen, and its last error (a refusal, or the controller's compile error for it), cut to one
line. Missing fields are shown as ``-`` so that an older or newer server still renders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_COLUMNS = ("PROXY", "ROLE", "VERSION", "APPLIED", "STATE", "LAST SEEN", "ERROR")
MAX_ERROR_CHARS = 120


def format_status(proxies_json: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    """The table for ``proxies_json`` (the whole answer, or just its ``proxies`` list)."""
    if isinstance(proxies_json, Mapping):
        proxies: Sequence[Mapping[str, Any]] = proxies_json.get("proxies") or []
        header = _header(proxies_json)
    else:
        proxies, header = proxies_json, ""
    if not proxies:
        return (header + "no proxies have connected").strip() + "\n"
    rows = [_COLUMNS, *(_row(p) for p in proxies)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]
    in_sync = sum(1 for p in proxies if p.get("in_sync"))
    footer = f"{in_sync}/{len(proxies)} proxies in sync"
    return header + "\n".join(line.rstrip() for line in lines) + "\n" + footer + "\n"


def _header(answer: Mapping[str, Any]) -> str:
    cluster = answer.get("cluster")
    return f"cluster {cluster}\n" if cluster else ""


def _row(proxy: Mapping[str, Any]) -> tuple[str, ...]:
    state = str(proxy.get("state") or "-")
    if proxy.get("connected") is False:
        state += ", disconnected"
    error = str(proxy.get("error") or proxy.get("compile_error") or "-")
    error = " ".join(error.split())
    if len(error) > MAX_ERROR_CHARS:
        error = error[: MAX_ERROR_CHARS - 3] + "..."
    return (
        str(proxy.get("id") or "-"),
        str(proxy.get("role") or "-"),
        str(proxy.get("version") or "-"),
        str(proxy.get("applied_version") or "-"),
        state,
        _age(proxy.get("age_s")),
        error,
    )


def _age(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    seconds = int(value)
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"
