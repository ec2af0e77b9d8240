"""Compiled matchers for one Gateway API ``HTTPRouteMatch``: path, method, headers, query.

``gateway.routing.table`` compiles every ``RouteMatch`` of a snapshot once, when it builds a
route table, and runs them per request. Everything that can be decided at build time is:
regexes are compiled, prefixes normalized, header names encoded, duplicate names dropped.
The URL-rewrite and redirect filters reuse :func:`split_path_query`. Pure code, no I/O.

Semantics (Gateway API ``HTTPRouteMatch``):

* ``PathPrefix`` matches whole path elements: ``/foo`` matches ``/foo``, ``/foo/`` and
  ``/foo/bar`` but not ``/foobar``; a trailing ``/`` in the prefix is ignored.
* ``Exact`` compares the path (without the query) as is; ``RegularExpression`` must match
  the whole path (``re.fullmatch``).
* A header match compares the request's value; several values of one header are joined
  with ``,`` (as RFC 9110 §5.3 allows). A query match uses the first value of the param,
  percent-decoded. Names are case-insensitive for headers and case-sensitive for params.
  When a match lists the same name twice only the first entry counts.
* A match without a path is ``PathPrefix /`` for matching and for precedence (the API
  server defaults it so).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import unquote

from gateway.config.snapshot import HeaderMatch, PathMatch, QueryMatch, RouteMatch

# Request headers as the codecs hand them over: lower-case names. Declared here rather than
# imported because routing and codec are independent layers.
Headers = Sequence[tuple[bytes, bytes]]

# Precedence rank of the path match type: lower wins. RegularExpression shares the rank of
# PathPrefix (its order is implementation-specific in the spec) and is then ordered by the
# length of its value, like a prefix; at equal length the prefix wins.
PATH_RANK_EXACT = 0
PATH_RANK_PREFIX = 1


def split_path_query(target: str) -> tuple[str, str]:
    """Split a request target into (path, query); the query has no leading ``?``."""
    q = target.find("?")
    if q < 0:
        return target, ""
    return target[:q], target[q + 1 :]


def normalize_prefix(prefix: str) -> str:
    """A PathPrefix value with its trailing ``/`` dropped; ``/`` itself becomes ``""``."""
    return prefix.rstrip("/")


def prefix_matches(prefix: str, path: str) -> bool:
    """Whether ``path`` starts with the normalized ``prefix`` on a path-element boundary."""
    n = len(prefix)
    return path.startswith(prefix) and (len(path) == n or path[n] == "/")


def first_segment(path: str) -> str | None:
    """The first path element (``"a"`` for ``/a/b``, ``""`` for ``/``); ``None`` when the path
    does not start with ``/``. Any path a prefix or exact value matches has the same one."""
    if not path.startswith("/"):
        return None
    end = path.find("/", 1)
    return path[1:] if end < 0 else path[1:end]


def parse_query(query: str) -> dict[str, str]:
    """Query parameters, percent-decoded; the first value of a repeated name wins.

    The spec leaves repeated params undefined and recommends the first value. ``+`` is left
    alone (it is only a space in form encoding), as Envoy does.
    """
    params: dict[str, str] = {}
    if not query:
        return params
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in name:
            name = unquote(name)
        if name not in params:
            params[name] = unquote(value) if "%" in value else value
    return params


PathPredicate = Callable[[str], object]


class PathMatcher:
    """The path part of a match. ``test`` is ``None`` when every path matches."""

    __slots__ = ("kind", "length", "prefix", "rank", "segment", "test", "value")

    def __init__(self, path: PathMatch | None) -> None:
        kind = path.type if path is not None else "PathPrefix"
        value = path.value if path is not None else "/"
        self.kind = kind
        self.value = value
        self.prefix: str | None = None
        self.test: PathPredicate | None
        # The first path element every matching path has (None: any), for the table's index.
        self.segment: str | None = None
        if kind == "Exact":
            self.rank = PATH_RANK_EXACT
            self.test = value.__eq__
            self.segment = first_segment(value)
        elif kind == "PathPrefix":
            self.rank = PATH_RANK_PREFIX
            prefix = normalize_prefix(value)
            # The matched prefix as filters see it: "/" stays "/", "/foo/" becomes "/foo".
            self.prefix = prefix or "/"
            self.test = None if not prefix else _prefix_test(prefix)
            self.segment = first_segment(prefix) if prefix else None
        elif kind == "RegularExpression":
            self.rank = PATH_RANK_PREFIX
            try:
                self.test = re.compile(value).fullmatch
            except re.error as e:
                raise ValueError(f"path.value: invalid regular expression {value!r}: {e}") from e
        else:  # pragma: no cover - the snapshot type forbids it
            raise ValueError(f"path.type: unsupported {kind!r}")
        # "/" and "/foo/" count as the characters a user wrote; a trailing slash adds nothing.
        self.length = len(self.prefix) if self.prefix is not None else len(value)

    def matches(self, path: str) -> bool:
        return self.test is None or bool(self.test(path))

    def __repr__(self) -> str:
        return f"<PathMatcher {self.kind} {self.value!r}>"


def _prefix_test(prefix: str) -> PathPredicate:
    n = len(prefix)

    def test(path: str) -> bool:
        return path.startswith(prefix) and (len(path) == n or path[n] == "/")

    return test


class HeaderMatcher:
    """One header condition. ``name`` is lower-case bytes."""

    __slots__ = ("exact", "name", "regex")

    def __init__(self, match: HeaderMatch) -> None:
        self.name = match.name.lower().encode("latin-1")
        self.exact: bytes | None = None
        self.regex: re.Pattern[str] | None = None
        if match.type == "Exact":
            self.exact = match.value.encode("utf-8")
        else:
            try:
                self.regex = re.compile(match.value)
            except re.error as e:
                raise ValueError(
                    f"headers[{match.name}].value: invalid regular expression: {e}"
                ) from e

    def matches(self, headers: Headers) -> bool:
        name = self.name
        value: bytes | None = None
        for k, v in headers:
            if k == name:
                value = v if value is None else value + b"," + v
        if value is None:
            return False
        if self.regex is None:
            return value == self.exact
        return self.regex.fullmatch(value.decode("utf-8", "surrogateescape")) is not None

    def __repr__(self) -> str:
        how = f"={self.exact!r}" if self.regex is None else f"~{self.regex.pattern!r}"
        return f"<HeaderMatcher {self.name.decode()}{how}>"


class QueryMatcher:
    """One query-param condition, on the output of :func:`parse_query`."""

    __slots__ = ("exact", "name", "regex")

    def __init__(self, match: QueryMatch) -> None:
        self.name = match.name
        self.exact: str | None = None
        self.regex: re.Pattern[str] | None = None
        if match.type == "Exact":
            self.exact = match.value
        else:
            try:
                self.regex = re.compile(match.value)
            except re.error as e:
                raise ValueError(
                    f"queryParams[{match.name}].value: invalid regular expression: {e}"
                ) from e

    def matches(self, params: Mapping[str, str]) -> bool:
        value = params.get(self.name)
        if value is None:
            return False
        if self.regex is None:
            return value == self.exact
        return self.regex.fullmatch(value) is not None

    def __repr__(self) -> str:
        return f"<QueryMatcher {self.name}>"


class CompiledMatch:
    """All conditions of one ``RouteMatch`` (they AND together)."""

    __slots__ = ("headers", "method", "path", "query")

    def __init__(self, match: RouteMatch) -> None:
        self.path = PathMatcher(match.path)
        self.method = match.method or None
        seen_h: set[str] = set()
        headers: list[HeaderMatcher] = []
        for h in match.headers:
            key = h.name.lower()
            if key not in seen_h:
                seen_h.add(key)
                headers.append(HeaderMatcher(h))
        self.headers = tuple(headers)
        seen_q: set[str] = set()
        query: list[QueryMatcher] = []
        for q in match.query:
            if q.name not in seen_q:
                seen_q.add(q.name)
                query.append(QueryMatcher(q))
        self.query = tuple(query)

    @property
    def unconditional(self) -> bool:
        """True when this match accepts every request."""
        return (
            self.path.test is None and self.method is None and not self.headers and not self.query
        )

    def precedence(self) -> tuple[int, int, int, int, int, int]:
        """The Gateway API order of this match; smaller sorts first (wins).

        Exact path, then the longest path value, then a method, then most header matches,
        then most query matches. Route age, name and rule order break the remaining ties in
        the table.
        """
        return (
            self.path.rank,
            -self.path.length,
            0 if self.path.kind != "RegularExpression" else 1,
            0 if self.method is not None else 1,
            -len(self.headers),
            -len(self.query),
        )

    def matches(self, target: str, method: str, headers: Headers) -> bool:
        """Evaluate against a request; ``target`` is the path with its query. Not the hot path
        (the table inlines this loop); kept for tests and one-off checks."""
        path, query = split_path_query(target)
        if not self.path.matches(path):
            return False
        if self.method is not None and self.method != method:
            return False
        if not all(h.matches(headers) for h in self.headers):
            return False
        if self.query:
            params = parse_query(query)
            return all(q.matches(params) for q in self.query)
        return True

    def __repr__(self) -> str:
        parts = [repr(self.path)]
        if self.method:
            parts.append(self.method)
        parts.extend(repr(h) for h in self.headers)
        parts.extend(repr(q) for q in self.query)
        return f"<CompiledMatch {' '.join(parts)}>"
