"""Active health checks, configured per Service with ``health.isthmus.dev/*`` annotations.

``Service.check`` (``gateway.config.kinds.core``) reports every problem of these annotations
at load time, naming the annotation; ``gateway.config.clusters`` puts the parsed
:class:`HealthCheck` on every cluster of the Service. docs/traffic-policy.md documents them.

=====================================  ==================================================
annotation                             meaning (default)
=====================================  ==================================================
``health.isthmus.dev/path``            HTTP path to GET; its presence enables checking
``health.isthmus.dev/interval``        time between checks of one endpoint (``5s``)
``health.isthmus.dev/timeout``         a check without an answer by then fails (``1s``)
``health.isthmus.dev/healthy-threshold``    passes in a row to become healthy (``2``)
``health.isthmus.dev/unhealthy-threshold``  failures in a row to become unhealthy (``3``)
``health.isthmus.dev/port``            endpoint port to check (the endpoint's own port)
``health.isthmus.dev/expected-statuses``    healthy statuses, e.g. ``200,204`` (any 2xx)
=====================================  ==================================================

Durations use Istio's syntax (``500ms``, ``5s``, ``1m``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from gateway.config.kinds import durations
from gateway.config.schema import FieldIssue, join
from gateway.config.snapshot import HealthCheck

PREFIX = "health.isthmus.dev/"
KEYS = (
    "path",
    "interval",
    "timeout",
    "healthy-threshold",
    "unhealthy-threshold",
    "port",
    "expected-statuses",
)
_PATH = re.compile(r"^/[\x21-\x7e]*$")
_MAX_THRESHOLD = 1000


def health_check(annotations: Mapping[str, str]) -> tuple[HealthCheck | None, list[FieldIssue]]:
    """The health check the annotations describe (None when there is none), and every
    problem with them. Paths are ``metadata.annotations["health.isthmus.dev/..."]``."""
    ours = {k[len(PREFIX) :]: v for k, v in annotations.items() if k.startswith(PREFIX)}
    if not ours:
        return None, []
    issues: list[FieldIssue] = []

    def path_of(key: str) -> str:
        return join("metadata.annotations", PREFIX + key)

    for key in ours:
        if key not in KEYS:
            hint = difflib.get_close_matches(key, KEYS, n=1, cutoff=0.6)
            suffix = f" (did you mean {PREFIX}{hint[0]}?)" if hint else ""
            known = ", ".join(PREFIX + k for k in KEYS)
            issues.append(
                (path_of(key), f"unknown health-check annotation{suffix}; known: {known}")
            )
    if "path" not in ours:
        issues.append(
            (path_of("path"), "required: the other health.isthmus.dev annotations need a path")
        )
        return None, issues
    fields: dict[str, Any] = {}
    path = ours["path"]
    if _PATH.match(path):
        fields["path"] = path
    else:
        issues.append((path_of("path"), f'"{path}" is not an HTTP path starting with "/"'))
    for key in ("interval", "timeout"):
        if key in ours:
            problem = durations.duration_problem(ours[key])
            if problem:
                issues.append((path_of(key), problem))
            else:
                fields[f"{key}_s"] = durations.seconds(ours[key])
    for key in ("healthy-threshold", "unhealthy-threshold"):
        if key in ours:
            number = _integer(ours[key], 1, _MAX_THRESHOLD)
            if number is None:
                issues.append(
                    (
                        path_of(key),
                        f'"{ours[key]}" is not a whole number from 1 to {_MAX_THRESHOLD}',
                    )
                )
            else:
                fields[key.replace("-", "_")] = number
    if "port" in ours:
        port = _integer(ours["port"], 1, 65535)
        if port is None:
            issues.append((path_of("port"), f'"{ours["port"]}" is not a port number (1 to 65535)'))
        else:
            fields["port"] = port
    if "expected-statuses" in ours:
        statuses = _statuses(ours["expected-statuses"])
        if statuses is None:
            issues.append(
                (
                    path_of("expected-statuses"),
                    f'"{ours["expected-statuses"]}" is not a comma-separated list of HTTP '
                    "statuses (100 to 599), e.g. 200,204",
                )
            )
        else:
            fields["expected_statuses"] = statuses
    check = HealthCheck(**fields)
    if check.timeout_s > check.interval_s:
        key = "timeout" if "timeout_s" in fields else "interval"
        issues.append(
            (
                path_of(key),
                f"the timeout ({check.timeout_s:g}s) must not be longer than the interval "
                f"({check.interval_s:g}s)",
            )
        )
    return (None if issues else check), issues


def _integer(text: str, low: int, high: int) -> int | None:
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        return None
    value = int(text)
    return value if low <= value <= high else None


def _statuses(text: str) -> tuple[int, ...] | None:
    parts = [p.strip() for p in text.split(",")]
    codes = [_integer(p, 100, 599) for p in parts]
    if not parts or any(c is None for c in codes):
        return None
    return tuple(sorted({c for c in codes if c is not None}))
