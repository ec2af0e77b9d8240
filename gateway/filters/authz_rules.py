"""Compile AuthorizationPolicy rules from the snapshot into predicates over a request.

``gateway.filters.authz`` calls :func:`compile_policy` once per policy when a snapshot is
applied; the predicates then run per request against ``authz_request.RequestAttributes``.
The combination is Istio's: a rule matches when one of its sources, one of its operations
and every condition match (a missing list matches anything); inside a source or an
operation the fields are ANDed and the values of one field ORed; ``not*`` fields and
``notValues`` match when none of their values match, so they also match a request that
lacks the attribute (``notPrincipals`` matches a plaintext peer, as Envoy's RBAC does).
Raises ``ValueError`` naming the field for a value that cannot be compiled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.config.kinds.authz_keys import CLAIMS, HEADERS, parse_key
from gateway.config.snapshot import (
    AuthzAction,
    AuthzCondition,
    AuthzOperation,
    AuthzPolicy,
    AuthzRule,
    AuthzSource,
)
from gateway.filters.authz_match import (
    Test,
    any_test,
    ip_test,
    path_test,
    request_principal_test,
    string_test,
)
from gateway.filters.authz_request import RequestAttributes

Predicate = Callable[[RequestAttributes], bool]


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    name: str
    action: AuthzAction
    rules: tuple[Predicate, ...]

    def matches(self, attrs: RequestAttributes) -> bool:
        return any(rule(attrs) for rule in self.rules)


def compile_policy(policy: AuthzPolicy) -> CompiledPolicy:
    rules = []
    for i, rule in enumerate(policy.rules):
        try:
            rules.append(compile_rule(rule))
        except ValueError as e:
            raise ValueError(f"AuthorizationPolicy {policy.name} rules[{i}]: {e}") from e
    return CompiledPolicy(policy.name, policy.action, tuple(rules))


def compile_rule(rule: AuthzRule) -> Predicate:
    parts: list[Predicate] = []
    if rule.sources:
        parts.append(_any_of([_source(s) for s in rule.sources]))
    if rule.operations:
        parts.append(_any_of([_operation(o) for o in rule.operations]))
    for i, condition in enumerate(rule.conditions):
        try:
            parts.append(_condition(condition))
        except ValueError as e:
            raise ValueError(f"when[{i}]: {e}") from e
    return _all_of(parts)


# --- sources and operations ------------------------------------------------------------


def _source(source: AuthzSource) -> Predicate:
    parts: list[Predicate] = []
    _pair(parts, source.principals, source.not_principals, _principal)
    _pair(parts, source.namespaces, source.not_namespaces, _namespace)
    _pair(parts, source.ip_blocks, source.not_ip_blocks, _ip_blocks)
    _pair(parts, source.request_principals, source.not_request_principals, _request_principal)
    return _all_of(parts)


def _operation(operation: AuthzOperation) -> Predicate:
    parts: list[Predicate] = []
    _pair(parts, operation.hosts, operation.not_hosts, _hosts)
    _pair(parts, operation.methods, operation.not_methods, _methods)
    _pair(parts, operation.paths, operation.not_paths, _paths)
    _pair(parts, operation.ports, operation.not_ports, _ports)
    return _all_of(parts)


def _pair(
    parts: list[Predicate],
    values: Sequence[str],
    not_values: Sequence[str],
    make: Callable[[Sequence[str]], Predicate],
) -> None:
    """Add the predicate of a field and of its ``not`` form, when set."""
    if values:
        parts.append(make(values))
    if not_values:
        parts.append(_negate(make(not_values)))


def _principal(values: Sequence[str]) -> Predicate:
    test = any_test(string_test(v) for v in values)

    def match(a: RequestAttributes) -> bool:
        principal = a.principal
        return principal is not None and test(principal)

    return match


def _namespace(values: Sequence[str]) -> Predicate:
    test = any_test(string_test(v) for v in values)

    def match(a: RequestAttributes) -> bool:
        namespace = a.namespace
        return namespace is not None and test(namespace)

    return match


def _ip_blocks(values: Sequence[str]) -> Predicate:
    tests = []
    for value in values:
        try:
            tests.append(ip_test(value))
        except ValueError as e:
            raise ValueError(f'"{value}" is not an IP address or CIDR range') from e
    return lambda a: any(t(a.address) for t in tests)


def _request_principal(values: Sequence[str]) -> Predicate:
    tests = [request_principal_test(v) for v in values]
    return lambda a: any(t(a.issuer, a.subject) for t in tests)


def _hosts(values: Sequence[str]) -> Predicate:
    test = any_test(string_test(v, ignore_case=True) for v in values)
    return lambda a: test(a.host)


def _methods(values: Sequence[str]) -> Predicate:
    test = any_test(string_test(v) for v in values)
    return lambda a: test(a.method)


def _paths(values: Sequence[str]) -> Predicate:
    test = any_test(path_test(v) for v in values)
    return lambda a: test(a.path)


def _ports(values: Sequence[str]) -> Predicate:
    ports = frozenset(_port(v) for v in values)
    return lambda a: a.port in ports


def _port(value: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) > 65535:
        raise ValueError(f'"{value}" is not a port number')
    return int(value)


# --- conditions ------------------------------------------------------------------------


def _condition(condition: AuthzCondition) -> Predicate:
    attribute, names = parse_key(condition.key)
    make = _value_matchers(attribute, names)
    parts: list[Predicate] = []
    _pair(parts, condition.values, condition.not_values, make)
    return _all_of(parts)


def _value_matchers(attribute: str, names: tuple[str, ...]) -> Callable[[Sequence[str]], Predicate]:
    if attribute == HEADERS:
        return lambda values: _header(names[0], values)
    if attribute == CLAIMS:
        return lambda values: _strings(lambda a: a.claim(names), values)
    simple: dict[str, Callable[[Sequence[str]], Predicate]] = {
        "source.ip": _ip_blocks,
        "source.namespace": _namespace,
        "source.principal": _principal,
        "request.auth.principal": _request_principal,
        "request.auth.audiences": lambda values: _strings(lambda a: a.audiences, values),
        "request.auth.presenter": lambda values: _strings(lambda a: a.presenter, values),
        "destination.port": _ports,
    }
    return simple[attribute]


def _header(name: str, values: Sequence[str]) -> Predicate:
    """Envoy's header matcher: ``*`` is presence (even with an empty value)."""
    if "*" in values:
        return lambda a: a.header(name) is not None
    test = any_test(string_test(v) for v in values)

    def match(a: RequestAttributes) -> bool:
        value = a.header(name)
        return value is not None and test(value)

    return match


def _strings(get: Callable[[RequestAttributes], list[str]], values: Sequence[str]) -> Predicate:
    test: Test = any_test(string_test(v) for v in values)
    return lambda a: any(test(v) for v in get(a))


# --- combinators -----------------------------------------------------------------------


def _all_of(parts: Sequence[Predicate]) -> Predicate:
    found = tuple(parts)
    if not found:
        return lambda a: True
    if len(found) == 1:
        return found[0]
    return lambda a: all(p(a) for p in found)


def _any_of(parts: Sequence[Predicate]) -> Predicate:
    found = tuple(parts)
    if len(found) == 1:
        return found[0]
    return lambda a: any(p(a) for p in found)


def _negate(predicate: Predicate) -> Predicate:
    return lambda a: not predicate(a)
