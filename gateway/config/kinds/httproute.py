"""Gateway API ``HTTPRoute`` (v1): matches, filters, weighted backends and timeouts.

Validated by the loader; ``gateway.config.translate`` compiles each route into a snapshot
``HTTPRouteConfig`` and ``gateway.config.attach`` attaches it to Gateway listeners.

Implemented: matches on path (Exact, PathPrefix, RegularExpression), headers and query
parameters (Exact, RegularExpression) and method; the filters RequestHeaderModifier,
ResponseHeaderModifier, RequestRedirect, URLRewrite and RequestMirror; ExtensionRef filters
naming an ``isthmus.dev`` RateLimit or Fault; ``timeouts``;
``retry`` (experimental: ``codes``, ``attempts``, ``backoff``).
Rejected: other ExtensionRef filters, CORS and ExternalAuth filters, backendRef filters
and ``sessionPersistence``. Regular expressions use Python syntax.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec

from gateway.config.kinds.meta import (
    DNS_SUBDOMAIN,
    GATEWAY_GROUP,
    Duration,
    HeaderName,
    Hostname,
    Object,
    Port,
    SectionName,
    parse_duration,
)
from gateway.config.kinds.route_parts import (
    BackendRef,
    ExtensionRefSpec,
    HeaderModifierSpec,
    ParentRef,
    RequestMirrorSpec,
    backend_ref_issues,
    filter_count_issues,
    filter_shape_issues,
    header_modifier_issues,
    hostname_issues,
    mirror_issues,
    parent_ref_issues,
)
from gateway.config.schema import NOT_SUPPORTED, FieldIssue, Model, expect, item, join

Method = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
StringMatch = Literal["Exact", "RegularExpression"]
PreciseHostname = Annotated[
    str, expect("a hostname without wildcard", pattern=DNS_SUBDOMAIN, max_length=253)
]
_BAD_PATH_PARTS = ("//", "/./", "/../", "%2f", "%2F", "#")


class HTTPPathMatchSpec(Model, frozen=True, kw_only=True):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: Annotated[str, msgspec.Meta(max_length=1024)] = "/"


class HTTPHeaderMatchSpec(Model, frozen=True, kw_only=True):
    name: HeaderName
    value: Annotated[str, msgspec.Meta(max_length=4096)]
    type: StringMatch = "Exact"


class HTTPQueryParamMatchSpec(Model, frozen=True, kw_only=True):
    name: HeaderName
    value: Annotated[str, msgspec.Meta(max_length=1024)]
    type: StringMatch = "Exact"


class HTTPRouteMatchSpec(Model, frozen=True, kw_only=True):
    path: HTTPPathMatchSpec | None = None
    headers: Annotated[tuple[HTTPHeaderMatchSpec, ...], msgspec.Meta(max_length=16)] = ()
    query_params: Annotated[tuple[HTTPQueryParamMatchSpec, ...], msgspec.Meta(max_length=16)] = ()
    method: Method | None = None


class PathModifierSpec(Model, frozen=True, kw_only=True):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    replace_prefix_match: Annotated[str, msgspec.Meta(max_length=1024)] | None = None

    @property
    def value(self) -> str:
        chosen = (
            self.replace_full_path
            if self.type == "ReplaceFullPath"
            else (self.replace_prefix_match)
        )
        return chosen or "/"


class RequestRedirectSpec(Model, frozen=True, kw_only=True):
    scheme: Literal["http", "https"] | None = None
    hostname: PreciseHostname | None = None
    path: PathModifierSpec | None = None
    port: Port | None = None
    status_code: Literal[301, 302, 303, 307, 308] = 302


class URLRewriteSpec(Model, frozen=True, kw_only=True):
    hostname: PreciseHostname | None = None
    path: PathModifierSpec | None = None


class HTTPRouteFilterSpec(Model, frozen=True, kw_only=True):
    unsupported_values = {"type": ("CORS", "ExternalAuth")}
    unsupported_fields = {"cors": NOT_SUPPORTED, "externalAuth": NOT_SUPPORTED}

    type: Literal[
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestMirror",
        "RequestRedirect",
        "URLRewrite",
        "ExtensionRef",
        "CORS",
        "ExternalAuth",
    ]
    request_header_modifier: HeaderModifierSpec | None = None
    response_header_modifier: HeaderModifierSpec | None = None
    request_mirror: RequestMirrorSpec | None = None
    request_redirect: RequestRedirectSpec | None = None
    url_rewrite: URLRewriteSpec | None = None
    extension_ref: ExtensionRefSpec | None = None


class HTTPRouteTimeouts(Model, frozen=True, kw_only=True):
    """GEP-2257 durations; ``0s`` disables the timeout."""

    request: Duration | None = None
    backend_request: Duration | None = None


RetryCode = Annotated[int, msgspec.Meta(ge=400, le=599)]


class HTTPRouteRetry(Model, frozen=True, kw_only=True):
    """Gateway API ``HTTPRouteRetry`` (GEP-1731). ``attempts`` is the number of retries after
    the first try; connect failures, resets and per-try timeouts are always retryable."""

    codes: Annotated[tuple[RetryCode, ...], msgspec.Meta(max_length=32)] = ()
    attempts: Annotated[int, msgspec.Meta(ge=0, le=10)] | None = None
    backoff: Duration | None = None


class HTTPRouteRuleSpec(Model, frozen=True, kw_only=True):
    unsupported_fields = {"sessionPersistence": NOT_SUPPORTED}

    name: SectionName | None = None
    matches: Annotated[tuple[HTTPRouteMatchSpec, ...], msgspec.Meta(max_length=64)] = ()
    filters: Annotated[tuple[HTTPRouteFilterSpec, ...], msgspec.Meta(max_length=16)] = ()
    backend_refs: Annotated[tuple[BackendRef, ...], msgspec.Meta(max_length=16)] = ()
    timeouts: HTTPRouteTimeouts | None = None
    retry: HTTPRouteRetry | None = None


class HTTPRouteSpec(Model, frozen=True, kw_only=True):
    unsupported_fields = {"useDefaultGateways": NOT_SUPPORTED}

    parent_refs: Annotated[tuple[ParentRef, ...], msgspec.Meta(max_length=32)] = ()
    hostnames: Annotated[tuple[Hostname, ...], msgspec.Meta(max_length=16)] = ()
    rules: Annotated[tuple[HTTPRouteRuleSpec, ...], msgspec.Meta(max_length=16)] = (
        HTTPRouteRuleSpec(),
    )


class HTTPRoute(Object, frozen=True, kw_only=True):
    kind_name = "HTTPRoute"
    api_versions = (f"{GATEWAY_GROUP}/v1", f"{GATEWAY_GROUP}/v1beta1")

    spec: HTTPRouteSpec = HTTPRouteSpec()

    def check(self) -> list[FieldIssue]:
        issues = parent_ref_issues(self.spec.parent_refs) + hostname_issues(self.spec.hostnames)
        for i, rule in enumerate(self.spec.rules):
            issues.extend(_rule_issues(item("spec.rules", i), rule))
        return issues


def _rule_issues(path: str, rule: HTTPRouteRuleSpec) -> list[FieldIssue]:
    issues: list[FieldIssue] = []
    for i, match in enumerate(rule.matches):
        issues.extend(match_issues(item(join(path, "matches"), i), match))
    filters_path = join(path, "filters")
    for i, spec in enumerate(rule.filters):
        issues.extend(_filter_issues(item(filters_path, i), spec, rule))
    issues.extend(filter_count_issues(filters_path, [f.type for f in rule.filters]))
    for i, ref in enumerate(rule.backend_refs):
        issues.extend(backend_ref_issues(item(join(path, "backendRefs"), i), ref))
    if rule.timeouts is not None:
        issues.extend(_timeout_issues(join(path, "timeouts"), rule.timeouts))
    return issues


def match_issues(path: str, match: HTTPRouteMatchSpec) -> list[FieldIssue]:
    issues: list[FieldIssue] = []
    if match.path is not None:
        here = join(join(path, "path"), "value")
        value = match.path.value
        if match.path.type == "RegularExpression":
            issues.extend(regex_issues(here, value))
        elif not value.startswith("/"):
            issues.append((here, f'"{value}" must start with "/"'))
        elif any(part in value for part in _BAD_PATH_PARTS) or value.endswith(("/..", "/.")):
            issues.append((here, f'"{value}" must not contain //, /./, /../, %2f or #'))
    issues.extend(string_match_issues(join(path, "headers"), match.headers, fold_case=True))
    issues.extend(
        string_match_issues(join(path, "queryParams"), match.query_params, fold_case=False)
    )
    return issues


def string_match_issues(
    path: str, entries: Sequence[HTTPHeaderMatchSpec | HTTPQueryParamMatchSpec], *, fold_case: bool
) -> list[FieldIssue]:
    """Names match at most once (headers case-insensitively); regexes must compile."""
    issues: list[FieldIssue] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        here = item(path, i)
        key = entry.name.lower() if fold_case else entry.name
        if key in seen:
            issues.append((join(here, "name"), f'"{entry.name}" is matched more than once'))
        seen.add(key)
        if entry.type == "RegularExpression":
            issues.extend(regex_issues(join(here, "value"), entry.value))
    return issues


def regex_issues(path: str, pattern: str) -> list[FieldIssue]:
    try:
        re.compile(pattern)
    except re.error as exc:
        return [(path, f"invalid regular expression: {exc}")]
    return []


def _filter_issues(
    path: str, spec: HTTPRouteFilterSpec, rule: HTTPRouteRuleSpec
) -> list[FieldIssue]:
    issues = filter_shape_issues(path, spec, spec.type)
    for attr, wire in (
        ("request_header_modifier", "requestHeaderModifier"),
        ("response_header_modifier", "responseHeaderModifier"),
    ):
        modifier = getattr(spec, attr)
        if isinstance(modifier, HeaderModifierSpec):
            issues.extend(header_modifier_issues(join(path, wire), modifier))
    if spec.request_mirror is not None:
        issues.extend(mirror_issues(join(path, "requestMirror"), spec.request_mirror))
    for wire, target in (
        ("requestRedirect", spec.request_redirect),
        ("urlRewrite", spec.url_rewrite),
    ):
        if target is not None and target.path is not None:
            issues.extend(_path_modifier_issues(join(join(path, wire), "path"), target.path, rule))
    return issues


def _path_modifier_issues(
    path: str, modifier: PathModifierSpec, rule: HTTPRouteRuleSpec
) -> list[FieldIssue]:
    wire = "replaceFullPath" if modifier.type == "ReplaceFullPath" else "replacePrefixMatch"
    chosen = (
        modifier.replace_full_path if wire == "replaceFullPath" else (modifier.replace_prefix_match)
    )
    other = (
        modifier.replace_prefix_match if wire == "replaceFullPath" else (modifier.replace_full_path)
    )
    issues: list[FieldIssue] = []
    if chosen is None:
        issues.append((join(path, wire), f"required when type is {modifier.type}"))
    elif not chosen.startswith("/"):
        issues.append((join(path, wire), f'"{chosen}" must start with "/"'))
    if other is not None:
        other_wire = "replacePrefixMatch" if wire == "replaceFullPath" else "replaceFullPath"
        issues.append((join(path, other_wire), f"must not be set when type is {modifier.type}"))
    if modifier.type == "ReplacePrefixMatch":
        prefix_only = len(rule.matches) == 1 and (
            rule.matches[0].path is None or rule.matches[0].path.type == "PathPrefix"
        )
        if rule.matches and not prefix_only:
            issues.append(
                (
                    join(path, "type"),
                    "ReplacePrefixMatch needs a rule with exactly one match, of type PathPrefix",
                )
            )
    return issues


def _timeout_issues(path: str, timeouts: HTTPRouteTimeouts) -> list[FieldIssue]:
    request = parse_duration(timeouts.request) if timeouts.request else 0.0
    backend = parse_duration(timeouts.backend_request) if timeouts.backend_request else 0.0
    if request and backend > request:
        return [
            (
                join(path, "backendRequest"),
                f"{timeouts.backend_request} is longer than the request timeout {timeouts.request}",
            )
        ]
    return []


def timeout_seconds(value: str | None) -> float | None:
    """A timeout for the snapshot: ``None`` when unset or ``0s`` (no timeout)."""
    if value is None:
        return None
    seconds = parse_duration(value)
    return seconds or None
