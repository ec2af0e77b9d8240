"""The route table of one port: from (authority, path, method, headers) to a compiled rule.

The role code builds one :class:`RouteTable` per listening port from the port's listeners
whenever a snapshot is applied (through ``gateway.filters.chain.build_route_table``, which
supplies the filter-chain builder), and the HTTP handler calls :meth:`RouteTable.match` once
per request. Pure code, no I/O.

Selection follows the Gateway API, in three steps:

1. **Listener.** The most specific listener hostname matching the Host wins (exact, then the
   longest wildcard, then a listener without a hostname). Only routes attached to that
   listener can serve the request (listener isolation).
2. **Route hostname.** Inside the listener, the most specific route hostname wins the same
   way. A route without hostnames serves its listener's hostname, or any host when the
   listener has none; it ranks below every named host.
3. **Match.** Inside that host, the first match in precedence order that holds: Exact path,
   longest path value, a method, most header matches, most query matches, oldest route,
   ``namespace/name`` alphabetically, then rule and match order within the route.

There is no fall-through between hosts: a host that is selected but has no matching rule
gives ``None`` (the caller answers 404), as Envoy's virtual hosts do.

The filter type is a parameter (``F``) because routing sits below the filters layer and may
not import it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Never, TypeVar, overload

from gateway.config.snapshot import (
    HTTPRouteConfig,
    Listener,
    RetryPolicy,
    RouteRule,
    WeightedBackend,
)
from gateway.routing.hostnames import (
    HostIndex,
    intersect_hostnames,
    normalize_hostname,
    split_authority,
)
from gateway.routing.match import CompiledMatch, HeaderMatcher, Headers, QueryMatcher, parse_query

# Covariant: a table whose rules have no filters is a table of any filter type.
F = TypeVar("F", covariant=True)

# Distinct authorities remembered per table. Clients choose the Host, so this is bounded;
# when full the cache is simply cleared.
_HOST_CACHE_MAX = 4096
# Below this many matches a host walks its list; above, it indexes by first path element.
_INDEX_MIN_ENTRIES = 8


class CompiledRule(Generic[F]):
    """One ``RouteRule`` ready to serve: its filter chain (built once), backends, timeouts."""

    __slots__ = (
        "_clusters",
        "_cumulative",
        "_single",
        "_total",
        "backend_request_timeout_s",
        "backends",
        "filters",
        "request_timeout_s",
        "retry",
        "rule",
    )

    def __init__(self, rule: RouteRule, filters: tuple[F, ...]) -> None:
        self.rule = rule
        self.filters = filters
        self.backends: tuple[WeightedBackend, ...] = rule.backends
        self.request_timeout_s = rule.request_timeout_s
        self.backend_request_timeout_s = rule.backend_request_timeout_s
        self.retry: RetryPolicy | None = rule.retry
        live = [b for b in rule.backends if b.weight > 0]
        self._clusters: tuple[str, ...] = tuple(b.cluster for b in live)
        cumulative: list[int] = []
        total = 0
        for b in live:
            total += b.weight
            cumulative.append(total)
        self._cumulative: tuple[int, ...] = tuple(cumulative)
        self._total = total
        self._single: str | None = self._clusters[0] if len(self._clusters) == 1 else None

    def pick_backend(self, r: float) -> str | None:
        """The cluster for a uniform draw ``r`` in [0, 1), weights proportional.

        ``None`` when there is no backend or every weight is 0; ``""`` when the picked
        reference was unresolved. The data plane answers 500 to both.
        """
        single = self._single
        if single is not None:
            return single
        if not self._total:
            return None
        i = bisect_right(self._cumulative, r * self._total)
        clusters = self._clusters
        return clusters[i] if i < len(clusters) else clusters[-1]

    def __repr__(self) -> str:
        backends = ", ".join(f"{b.cluster or '<unresolved>'}*{b.weight}" for b in self.backends)
        return f"<CompiledRule [{len(self.filters)} filters | {backends or 'no backends'}]>"


@dataclass(frozen=True, slots=True, eq=False)
class RouteMatchResult(Generic[F]):
    """What a request matched. Built at table build time and shared, never per request."""

    rule: CompiledRule[F]
    route_kind: str
    route_namespace: str
    route_name: str
    rule_index: int
    # The normalized PathPrefix that matched ("/foo" for "/foo/"; "/" for the root), for
    # ReplacePrefixMatch; None for Exact and RegularExpression matches.
    matched_prefix: str | None


class _Entry(Generic[F]):
    """One (route, rule, match) in precedence order, unpacked for the matching loop."""

    __slots__ = (
        "headers",
        "key",
        "method",
        "path",
        "prefix",
        "prefix_len",
        "query",
        "result",
        "segment",
    )

    def __init__(
        self, match: CompiledMatch, key: tuple[object, ...], result: RouteMatchResult[F]
    ) -> None:
        pm = match.path
        # A non-root PathPrefix is tested inline in the loop (no call); other tests are called.
        self.prefix: str | None = None
        self.prefix_len = 0
        self.path = pm.test
        if pm.kind == "PathPrefix" and pm.test is not None and pm.prefix is not None:
            self.prefix = pm.prefix
            self.prefix_len = len(pm.prefix)
            self.path = None
        self.segment = pm.segment
        self.method = match.method
        self.headers: tuple[HeaderMatcher, ...] = match.headers
        self.query: tuple[QueryMatcher, ...] = match.query
        self.key = key
        self.result = result


class VirtualHost(Generic[F]):
    """The ordered matches of every route serving one hostname pattern.

    With many matches, they are also indexed by the first path element their path needs
    (``/api/v1`` needs ``api``), each list keeping the matches that need no particular element
    (``/``, regular expressions) in their place, so a request only walks its candidates.
    """

    __slots__ = ("_by_segment", "_generic", "entries", "name", "unconditional")

    def __init__(self, name: str | None, entries: Sequence[_Entry[F]]) -> None:
        self.name = name
        self.entries: tuple[_Entry[F], ...] = tuple(sorted(entries, key=lambda e: e.key))
        self._generic = tuple(e for e in self.entries if e.segment is None)
        self._by_segment: dict[str, tuple[_Entry[F], ...]] | None = None
        segments = {e.segment for e in self.entries if e.segment is not None}
        if len(self.entries) >= _INDEX_MIN_ENTRIES and segments:
            self._by_segment = {
                s: tuple(e for e in self.entries if e.segment is None or e.segment == s)
                for s in segments
            }
        first = self.entries[0] if self.entries else None
        # When the best-ranked match accepts everything it always wins: skip the loop.
        self.unconditional: RouteMatchResult[F] | None = None
        if (
            first is not None
            and first.path is None
            and first.prefix is None
            and first.method is None
            and not first.headers
            and not first.query
        ):
            self.unconditional = first.result

    def match(self, target: str, method: str, headers: Headers) -> RouteMatchResult[F] | None:
        hit = self.unconditional
        if hit is not None:
            return hit
        q = target.find("?")
        if q < 0:
            path, query = target, ""
        else:
            path, query = target[:q], target[q + 1 :]
        candidates = self.entries
        by_segment = self._by_segment
        if by_segment is not None:
            if path.startswith("/"):
                end = path.find("/", 1)
                candidates = by_segment.get(path[1:] if end < 0 else path[1:end], self._generic)
            else:
                candidates = self._generic
        params: dict[str, str] | None = None
        for e in candidates:
            prefix = e.prefix
            if prefix is not None:
                if not path.startswith(prefix):
                    continue
                n = e.prefix_len
                if len(path) != n and path[n] != "/":
                    continue
            else:
                test = e.path
                if test is not None and not test(path):
                    continue
            if e.method is not None and e.method != method:
                continue
            if e.headers and not all(h.matches(headers) for h in e.headers):
                continue
            if e.query:
                if params is None:
                    params = parse_query(query)
                if not all(qm.matches(params) for qm in e.query):
                    continue
            return e.result
        return None

    def __repr__(self) -> str:
        return f"<VirtualHost {self.name or '*'} [{len(self.entries)} matches]>"


def _age_key(route: HTTPRouteConfig) -> tuple[int, float, str]:
    """Oldest first; a route without a (parsable) timestamp counts as newest."""
    ts = route.creation_timestamp
    if ts:
        try:
            return (0, datetime.fromisoformat(ts).timestamp(), ts)
        except ValueError:
            return (1, 0.0, ts)
    return (1, 0.0, "")


class _Builder(Generic[F]):
    """Build-time state: compiled rules and results are shared across hosts and listeners."""

    def __init__(self, build_filters: Callable[[RouteRule], tuple[F, ...]]) -> None:
        self.build_filters = build_filters
        self.rules: dict[tuple[str, str, str, int, RouteRule], CompiledRule[F]] = {}
        self.entries: dict[tuple[object, ...], list[_Entry[F]]] = {}

    def route_entries(self, route: HTTPRouteConfig) -> list[_Entry[F]]:
        ident = (route.kind, route.namespace, route.name)
        # The same route on several listeners differs only in hostnames: compile it once.
        ekey = (*ident, route.rules, route.creation_timestamp)
        cached = self.entries.get(ekey)
        if cached is not None:
            return cached
        age = _age_key(route)
        out: list[_Entry[F]] = []
        for ri, rule in enumerate(route.rules):
            rkey = (*ident, ri, rule)
            compiled = self.rules.get(rkey)
            if compiled is None:
                compiled = CompiledRule(rule, self.build_filters(rule))
                self.rules[rkey] = compiled
            for mi, m in enumerate(rule.matches):
                try:
                    cm = CompiledMatch(m)
                except ValueError as e:
                    where = f"{route.kind} {route.namespace}/{route.name} rules[{ri}].matches[{mi}]"
                    raise ValueError(f"{where}: {e}") from e
                result = RouteMatchResult(
                    compiled, route.kind, route.namespace, route.name, ri, cm.path.prefix
                )
                key = (
                    *cm.precedence(),
                    age,
                    f"{route.namespace}/{route.name}",
                    route.kind,
                    ri,
                    mi,
                )
                out.append(_Entry(cm, key, result))
        self.entries[ekey] = out
        return out


def _no_filters(rule: RouteRule) -> tuple[()]:
    return ()


class RouteTable(Generic[F]):
    """Every HTTP route reachable on one port. Immutable after :meth:`build`, apart from a
    bounded cache of authority lookups."""

    __slots__ = ("_cache", "_empty", "_listeners", "_only", "port", "rules")

    def __init__(
        self,
        port: int,
        listeners: HostIndex[HostIndex[VirtualHost[F]]],
        rules: tuple[CompiledRule[F], ...],
    ) -> None:
        self.port = port
        self._listeners = listeners
        self.rules = rules  # every compiled rule, for status pages and tests
        self._empty: VirtualHost[F] = VirtualHost(None, ())
        self._cache: dict[str, VirtualHost[F]] = {}
        # One catch-all host behind one catch-all listener: no host lookup at all.
        self._only: VirtualHost[F] | None = None
        if len(listeners) == 1 and listeners.any is not None:
            inner = listeners.any
            if len(inner) == 1 and inner.any is not None:
                self._only = inner.any

    @overload
    @classmethod
    def build(cls, listeners: Sequence[Listener]) -> RouteTable[Never]: ...

    @overload
    @classmethod
    def build(
        cls,
        listeners: Sequence[Listener],
        build_filters: Callable[[RouteRule], tuple[F, ...]],
    ) -> RouteTable[F]: ...

    @classmethod
    def build(
        cls,
        listeners: Sequence[Listener],
        build_filters: Callable[[RouteRule], tuple[Any, ...]] | None = None,
    ) -> RouteTable[Any]:
        """Compile the HTTP routes of ``listeners`` (all on one port).

        ``build_filters`` turns a rule into its filter chain; it is called once per rule.
        Without it rules get no filters. Raises ``ValueError`` naming the route and field when
        a match cannot be compiled (a bad regular expression).
        """
        builder: _Builder[Any] = _Builder(build_filters or _no_filters)
        ports = {listener.port for listener in listeners}
        if len(ports) > 1:
            raise ValueError(f"listeners: a route table serves one port, got {sorted(ports)}")
        # listener hostname -> route hostname -> entries
        grouped: dict[str | None, dict[str | None, dict[tuple[str, str, str], HTTPRouteConfig]]]
        grouped = {}
        for listener in listeners:
            if listener.protocol == "TLS":
                continue  # passthrough: routed on SNI, never by HTTP routes
            lhost = normalize_hostname(listener.hostname) if listener.hostname else None
            hosts = grouped.setdefault(lhost, {})
            for route in listener.http_routes:
                ident = (route.kind, route.namespace, route.name)
                names: list[str | None]
                if route.hostnames:
                    names = []
                    for h in route.hostnames:
                        served = intersect_hostnames(lhost, normalize_hostname(h))
                        if served is not None:
                            names.append(served)
                else:
                    names = [lhost]
                for name in names:
                    hosts.setdefault(name, {})[ident] = route
        index: HostIndex[HostIndex[VirtualHost[F]]] = HostIndex()
        for lhost, hosts in grouped.items():
            inner: HostIndex[VirtualHost[F]] = HostIndex()
            for name, routes in hosts.items():
                entries = [e for r in routes.values() for e in builder.route_entries(r)]
                inner.add(name, VirtualHost(name, entries))
            index.add(lhost, inner)
        port = next(iter(ports)) if ports else 0
        return cls(port, index, tuple(builder.rules.values()))

    def virtual_host(self, authority: str) -> VirtualHost[F]:
        """The virtual host serving ``authority`` (an empty one when none does)."""
        only = self._only
        if only is not None:
            return only
        vhost = self._cache.get(authority)
        if vhost is None:
            vhost = self._resolve(authority)
            cache = self._cache
            if len(cache) >= _HOST_CACHE_MAX:
                cache.clear()
            cache[authority] = vhost
        return vhost

    def _resolve(self, authority: str) -> VirtualHost[F]:
        host = split_authority(authority)[0]
        inner = self._listeners.lookup(host)
        if inner is None:
            return self._empty
        vhost = inner.lookup(host)
        return vhost if vhost is not None else self._empty

    def match(
        self, authority: str, path: str, method: str, headers: Headers
    ) -> RouteMatchResult[F] | None:
        """The rule serving this request, or ``None`` (the caller answers 404).

        ``path`` is the request target in origin form, query included; ``headers`` have
        lower-case names. Allocates nothing in the common case (cached host, no query).
        """
        only = self._only
        vhost = only if only is not None else self.virtual_host(authority)
        return vhost.match(path, method, headers)

    def __repr__(self) -> str:
        hosts = sum(len(inner) for inner in self._listeners.values())
        return (
            f"<RouteTable port={self.port} [listeners: {len(self._listeners)} | "
            f"hosts: {hosts} | rules: {len(self.rules)}]>"
        )
