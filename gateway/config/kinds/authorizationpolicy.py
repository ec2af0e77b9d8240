"""Istio ``AuthorizationPolicy`` (``security.istio.io/v1``, ``v1beta1``), with Istio's semantics.

Validated by the loader (the schema refuses every field outside the subset by name;
:meth:`AuthorizationPolicy.check` applies Istio's own validation rules);
``gateway.config.security`` decides which listeners a policy applies to and puts
:meth:`AuthorizationPolicy.policy` on them; ``gateway.filters.authz`` enforces it.
docs/security-policy.md has the table of fields and examples.

Implemented: ``action`` ALLOW (the default), DENY and AUDIT; ``selector.matchLabels``;
``targetRef``/``targetRefs`` to a Gateway; ``rules[].from[].source`` (``principals``,
``requestPrincipals``, ``namespaces``, ``ipBlocks`` and their ``not*`` forms);
``rules[].to[].operation`` (``hosts``, ``methods``, ``paths``, ``ports`` and their ``not*``
forms); ``rules[].when[]`` (``key``, ``values``, ``notValues``; the keys are listed in
``authz_keys``). Refused by name: the CUSTOM action and ``provider`` (external
authorization), ``remoteIpBlocks`` (needs trusted X-Forwarded-For hops) and
``serviceAccounts``.

The cases Istio's reference spells out, each of which isthmus follows:

* No ALLOW policy applies: every request is allowed (unless a DENY policy matches).
* An ALLOW policy without ``rules`` (and so ``spec: {}``) matches nothing; since an ALLOW
  policy applies, every request is denied ("allow nothing").
* ``rules: [{}]``: an empty rule matches every request ("allow all" with ALLOW).
* A DENY policy without ``rules`` is refused at load, as Istio refuses it ("meaningless as
  it will never be triggered; add an empty rule ``{}``"). ``rules: [{}]`` denies everything.
* An AUDIT policy never changes the decision; without rules it matches nothing.
* ``from: []`` and ``to: []``, a ``from`` without ``source`` or with an empty one, a ``to``
  without ``operation`` or with an empty one, an empty string anywhere, a condition with
  neither ``values`` nor ``notValues``: refused at load, as Istio refuses them.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from gateway.config.kinds import authz_keys
from gateway.config.kinds.meta import Object
from gateway.config.kinds.policy_target import (
    PolicyTargetRef,
    WorkloadSelector,
    scope_issues,
    target_gateways,
)
from gateway.config.schema import NOT_SUPPORTED, FieldIssue, Model, item, join
from gateway.config.snapshot import (
    AuthzCondition,
    AuthzOperation,
    AuthzPolicy,
    AuthzRule,
    AuthzSource,
)

ISTIO_SECURITY = "security.istio.io"
MATCH_ONE, MATCH_ANY = "{*}", "{**}"
# RFC 3986 pchar, the literal segments a path template may hold (as Istio checks them).
_LITERAL = re.compile(r"^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$")
Values = tuple[str, ...]


class Source(Model, frozen=True, kw_only=True):
    unsupported_fields = {
        "remoteIpBlocks": f"{NOT_SUPPORTED} (needs trusted X-Forwarded-For hops); use ipBlocks",
        "notRemoteIpBlocks": f"{NOT_SUPPORTED} (needs trusted X-Forwarded-For hops)",
        "serviceAccounts": f"{NOT_SUPPORTED}; use principals",
        "notServiceAccounts": f"{NOT_SUPPORTED}; use notPrincipals",
    }

    principals: Values = ()
    not_principals: Values = ()
    request_principals: Values = ()
    not_request_principals: Values = ()
    namespaces: Values = ()
    not_namespaces: Values = ()
    ip_blocks: Values = ()
    not_ip_blocks: Values = ()

    def source(self) -> AuthzSource:
        return AuthzSource(**{f: getattr(self, f) for f in self.__struct_fields__})


class From(Model, frozen=True, kw_only=True):
    source: Source | None = None


class Operation(Model, frozen=True, kw_only=True):
    hosts: Values = ()
    not_hosts: Values = ()
    methods: Values = ()
    not_methods: Values = ()
    paths: Values = ()
    not_paths: Values = ()
    ports: Values = ()
    not_ports: Values = ()

    def operation(self) -> AuthzOperation:
        return AuthzOperation(**{f: getattr(self, f) for f in self.__struct_fields__})


class To(Model, frozen=True, kw_only=True):
    operation: Operation | None = None


class Condition(Model, frozen=True, kw_only=True):
    key: str
    values: Values = ()
    not_values: Values = ()


class Rule(Model, frozen=True, kw_only=True):
    from_: tuple[From, ...] | None = msgspec.field(name="from", default=None)
    to: tuple[To, ...] | None = None
    when: tuple[Condition, ...] = ()

    def rule(self) -> AuthzRule:
        return AuthzRule(
            sources=tuple(f.source.source() for f in self.from_ or () if f.source is not None),
            operations=tuple(
                t.operation.operation() for t in self.to or () if t.operation is not None
            ),
            conditions=tuple(
                AuthzCondition(key=c.key, values=c.values, not_values=c.not_values)
                for c in self.when
            ),
        )


class AuthorizationPolicySpec(Model, frozen=True, kw_only=True):
    unsupported_fields = {
        "provider": f"{NOT_SUPPORTED} (the CUSTOM action: external authorization)",
    }
    unsupported_values = {"action": ("CUSTOM",)}

    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetRef | None = None
    target_refs: tuple[PolicyTargetRef, ...] = ()
    action: Literal["ALLOW", "DENY", "AUDIT"] = "ALLOW"
    rules: tuple[Rule, ...] | None = None


class AuthorizationPolicy(Object, frozen=True, kw_only=True):
    kind_name = "AuthorizationPolicy"
    api_versions = (f"{ISTIO_SECURITY}/v1", f"{ISTIO_SECURITY}/v1beta1")

    spec: AuthorizationPolicySpec | None = None

    @property
    def body(self) -> AuthorizationPolicySpec:
        """The spec; an absent or null spec is the empty one (which denies everything)."""
        return self.spec if self.spec is not None else AuthorizationPolicySpec()

    @property
    def gateways(self) -> tuple[str, ...]:
        """``namespace/name`` of the Gateways the policy targets (empty: none named)."""
        return target_gateways(self.namespace, self.body.target_ref, self.body.target_refs)

    def check(self) -> list[FieldIssue]:
        spec = self.body
        issues = scope_issues(
            "spec", self.namespace, spec.selector, spec.target_ref, spec.target_refs
        )
        if spec.action == "DENY" and not spec.rules:
            issues.append(
                (
                    "spec.rules",
                    "a DENY policy without rules would never be triggered; "
                    "add an empty rule {} to deny every request",
                )
            )
        for i, rule in enumerate(spec.rules or ()):
            issues += _rule_issues(item("spec.rules", i), rule)
        return issues

    def policy(self) -> AuthzPolicy:
        """The snapshot form of the policy."""
        return AuthzPolicy(
            name=f"{self.namespace}/{self.name}",
            action=self.body.action,
            rules=tuple(r.rule() for r in self.body.rules or ()),
        )


def _rule_issues(path: str, rule: Rule) -> list[FieldIssue]:
    issues: list[FieldIssue] = []
    if rule.from_ is not None and not rule.from_:
        issues.append((join(path, "from"), "must not be empty; leave it out to match any source"))
    for i, f in enumerate(rule.from_ or ()):
        here = join(item(join(path, "from"), i), "source")
        if f.source is None:
            issues.append((here, "required field is missing"))
            continue
        issues += _values_issues(here, f.source)
        for name in ("ipBlocks", "notIpBlocks"):
            for j, value in enumerate(getattr(f.source, _attr(name))):
                problem = authz_keys.ip_problem(value) if value else None
                if problem:
                    issues.append((item(join(here, name), j), problem))
    if rule.to is not None and not rule.to:
        issues.append((join(path, "to"), "must not be empty; leave it out to match any operation"))
    for i, t in enumerate(rule.to or ()):
        here = join(item(join(path, "to"), i), "operation")
        if t.operation is None:
            issues.append((here, "required field is missing"))
            continue
        issues += _values_issues(here, t.operation)
        for name in ("ports", "notPorts"):
            for j, value in enumerate(getattr(t.operation, _attr(name))):
                problem = authz_keys.port_problem(value) if value else None
                if problem:
                    issues.append((item(join(here, name), j), problem))
        for name in ("paths", "notPaths"):
            for j, value in enumerate(getattr(t.operation, _attr(name))):
                problem = path_template_problem(value)
                if problem:
                    issues.append((item(join(here, name), j), problem))
    for i, condition in enumerate(rule.when):
        issues += _condition_issues(item(join(path, "when"), i), condition)
    return issues


def _values_issues(path: str, model: Source | Operation) -> list[FieldIssue]:
    """Istio's rules for a source or an operation: not empty, and no empty string in it."""
    issues: list[FieldIssue] = []
    fields = model.__struct_encode_fields__
    if not any(getattr(model, f) for f in model.__struct_fields__):
        issues.append((path, f"must set at least one of {', '.join(fields)}"))
    for attr, name in zip(model.__struct_fields__, fields, strict=True):
        for j, value in enumerate(getattr(model, attr)):
            if not value:
                issues.append((item(join(path, name), j), "empty values are not allowed"))
    return issues


def _condition_issues(path: str, condition: Condition) -> list[FieldIssue]:
    try:
        attribute, _ = authz_keys.parse_key(condition.key)
    except ValueError as e:
        return [(join(path, "key"), str(e))]
    if not condition.values and not condition.not_values:
        return [(path, "set at least one of values and notValues")]
    issues: list[FieldIssue] = []
    for name, values in (("values", condition.values), ("notValues", condition.not_values)):
        for j, value in enumerate(values):
            problem = authz_keys.value_problem(attribute, value)
            if problem:
                issues.append((item(join(path, name), j), problem))
    return issues


def path_template_problem(path: str) -> str | None:
    """Istio's rule for path templates: ``{*}`` and ``{**}`` as whole segments, ``{**}``
    last, no other braces, and literal segments of RFC 3986 path characters."""
    if not path:
        return "empty values are not allowed"
    templated = MATCH_ONE in path or MATCH_ANY in path
    seen_any = False
    for segment in path.strip("/").split("/"):
        if segment in (MATCH_ONE, MATCH_ANY):
            if seen_any:
                return f'"{path}": {{**}} must be the last operator'
            seen_any = segment == MATCH_ANY
            continue
        if "{" in segment or "}" in segment:
            return f'"{path}": only {{*}} and {{**}} may stand in braces, as whole segments'
        if templated and not _LITERAL.match(segment):
            return f'"{path}": the segment "{segment}" has characters a template cannot hold'
    return None


def _attr(wire: str) -> str:
    """The attribute name of a camelCase wire name."""
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), wire)
