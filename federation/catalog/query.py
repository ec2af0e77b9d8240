"""The query options every Consul endpoint parses: ``dc``, the ACL token, consistency,
``index``/``wait``, and the Enterprise-only ``ns``/``partition``.

Called by the routes before they touch the store. Errors are Consul's: 400 ``Invalid wait
time`` (``wait`` must be a Go duration; a bare number other than ``0`` is not), 400
``Invalid index``, 400 for ``?stale`` with ``?consistent``, 400 for a namespace or partition
(Community Edition), 500 ``No path to datacenter`` for another datacenter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from federation.catalog.durations import SECOND, DurationError, parse_duration
from federation.catalog.errors import HTTPError, RPCError

DEFAULT_WAIT_S = 300.0  # Consul holds a blocking query 5 minutes by default ...
MAX_WAIT_S = 600.0  # ... and at most 10 minutes.
JITTER_FRACTION = 16  # ... plus up to wait/16 of jitter.


class Params:
    """Query parameters with Go's ``url.Values`` semantics (first value, presence)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def has(self, key: str) -> bool:
        return any(k == key for k, _v in self._items)

    def get(self, key: str) -> str:
        for k, v in self._items:
            if k == key:
                return v
        return ""

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self._items if k == key]

    def encode(self) -> str:
        """Go's ``Values.Encode()``: sorted by key, values in order."""
        from urllib.parse import quote_plus

        ordered = sorted(self._items, key=lambda kv: kv[0])
        return "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in ordered)


@dataclass(frozen=True, slots=True)
class QueryOptions:
    token: str = ""
    min_index: int = 0
    wait_s: float = 0.0  # 0: the default wait
    consistency: str = "leader"  # X-Consul-Effective-Consistency

    def timeout_s(self, jitter: float) -> float:
        """Consul's query timeout: ``wait`` (default 5 m, at most 10 m) plus ``jitter`` in
        [0, 1) of a sixteenth of it."""
        wait = self.wait_s if self.wait_s > 0 else DEFAULT_WAIT_S
        wait = min(wait, MAX_WAIT_S)
        return wait + jitter * wait / JITTER_FRACTION


def parse_token(params: Params, headers: Mapping[str, str]) -> str:
    """``?token=``, then ``X-Consul-Token``, then ``Authorization: Bearer <t>``."""
    if token := params.get("token"):
        return token
    if token := headers.get("x-consul-token", ""):
        return token
    auth = headers.get("authorization", "")
    scheme, _sep, value = auth.partition(" ")
    if value and scheme.lower() == "bearer":
        return value.strip().split(" ")[0].strip()
    return ""


def check_dc(params: Params, datacenter: str) -> None:
    dc = params.get("dc")
    if dc and dc != datacenter:
        raise RPCError("No path to datacenter")


def check_enterprise(params: Params, headers: Mapping[str, str]) -> None:
    if headers.get("x-consul-namespace"):
        raise HTTPError(
            400,
            'Invalid header: "X-Consul-Namespace" - Namespaces are a Consul Enterprise feature',
        )
    if params.get("ns"):
        raise HTTPError(
            400, 'Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature'
        )
    if headers.get("x-consul-partition"):
        raise HTTPError(
            400,
            'Invalid header: "X-Consul-Partition" - Partitions are a Consul Enterprise feature',
        )
    if params.get("partition"):
        raise HTTPError(
            400,
            'Invalid query parameter: "partition" - Partitions are a Consul Enterprise feature',
        )


def parse_options(params: Params, headers: Mapping[str, str], datacenter: str) -> QueryOptions:
    """Consul's ``parse()``: dc, token, consistency, then wait and index."""
    check_dc(params, datacenter)
    token = parse_token(params, headers)
    stale = params.has("stale")
    consistent = params.has("consistent")
    if stale and consistent:
        raise HTTPError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
    if max_stale := params.get("max_stale"):
        try:
            if parse_duration(max_stale) > 0:
                stale = True
        except DurationError:
            raise HTTPError(400, f'Invalid max_stale value "{max_stale}"') from None
    wait_s = 0.0
    if wait := params.get("wait"):
        try:
            wait_s = parse_duration(wait) / SECOND
        except DurationError:
            raise HTTPError(400, "Invalid wait time") from None
    min_index = 0
    if index := params.get("index"):
        if not (index.isascii() and index.isdigit()) or int(index) >= 1 << 64:
            raise HTTPError(400, "Invalid index")
        min_index = int(index)
    consistency = "consistent" if consistent else "stale" if stale else "leader"
    return QueryOptions(token=token, min_index=min_index, wait_s=wait_s, consistency=consistency)


def parse_bool(params: Params, key: str, message: str) -> bool:
    """Go's ``getBoolQueryParam``: absent false, empty true, else ``strconv.ParseBool``."""
    if not params.has(key):
        return False
    value = params.get(key)
    if value == "":
        return True
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise HTTPError(400, message)
