"""Istio ``RequestAuthentication`` (``security.istio.io/v1``, ``v1beta1``): JWT rules.

Validated by the loader (fields outside the subset refused by name; Istio's own rules in
:meth:`RequestAuthentication.check`); ``gateway.config.security`` puts the rules of every
policy that applies to a listener (same scoping as AuthorizationPolicy, see
``policy_target``) on it, and ``gateway.filters.authn_jwt`` enforces them.

Implemented per ``jwtRules[]`` entry: ``issuer``, ``audiences``, ``jwksUri`` (http or https;
fetched in the background, cached and refreshed) or inline ``jwks``, ``fromHeaders``
(``name`` and ``prefix``), ``fromParams``, ``outputPayloadToHeader`` and
``forwardOriginalToken``. Refused by name: ``fromCookies``, ``outputClaimToHeaders`` and
``timeout``. Istio finds the keys through the issuer's OpenID discovery document when neither
``jwksUri`` nor ``jwks`` is set; isthmus does not, and asks for one of them.

As in Istio, a request without a token passes authentication (an AuthorizationPolicy with
``requestPrincipals`` decides whether that is enough), and one with an invalid token is
refused with 401.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from gateway.config.kinds.meta import HEADER_NAME, Object
from gateway.config.kinds.policy_target import (
    PolicyTargetRef,
    WorkloadSelector,
    scope_issues,
    target_gateways,
)
from gateway.config.schema import NOT_SUPPORTED, FieldIssue, Model, item, join
from gateway.config.snapshot import JwtHeader, JwtRule

ISTIO_SECURITY = "security.istio.io"
_HEADER_NAME = re.compile(HEADER_NAME)


class JwtHeaderSpec(Model, frozen=True, kw_only=True):
    name: str
    prefix: str = ""


class JwtRuleSpec(Model, frozen=True, kw_only=True):
    unsupported_fields = {
        "fromCookies": f"{NOT_SUPPORTED}; read the token from a header or a query parameter",
        "outputClaimToHeaders": f"{NOT_SUPPORTED}; use outputPayloadToHeader",
        "timeout": f"{NOT_SUPPORTED} (the JWKS fetch times out after 5s)",
    }

    issuer: str = ""
    audiences: tuple[str, ...] = ()
    jwks_uri: str = ""
    jwks: str = ""
    from_headers: tuple[JwtHeaderSpec, ...] = ()
    from_params: tuple[str, ...] = ()
    output_payload_to_header: str = ""
    forward_original_token: bool = False

    def issues(self, path: str) -> list[FieldIssue]:
        issues: list[FieldIssue] = []
        for i, audience in enumerate(self.audiences):
            if not audience:
                issues.append((item(join(path, "audiences"), i), "an audience must not be empty"))
        if not self.issuer and not self.jwks_uri:
            issues.append((path, "set issuer or jwksUri (or both)"))
        if self.jwks_uri and self.jwks:
            issues.append((path, "set only one of jwksUri and jwks"))
        elif not self.jwks_uri and not self.jwks:
            issues.append(
                (
                    path,
                    "set jwksUri or jwks (finding the keys through the issuer's OpenID "
                    f"discovery document is {NOT_SUPPORTED})",
                )
            )
        if self.jwks_uri:
            problem = jwks_uri_problem(self.jwks_uri)
            if problem:
                issues.append((join(path, "jwksUri"), problem))
        if self.jwks:
            problem = jwks_problem(self.jwks)
            if problem:
                issues.append((join(path, "jwks"), problem))
        for i, location in enumerate(self.from_headers):
            here = item(join(path, "fromHeaders"), i)
            if not _HEADER_NAME.match(location.name):
                issues.append((join(here, "name"), f'"{location.name}" is not a header name'))
        for i, param in enumerate(self.from_params):
            if not param:
                issues.append((item(join(path, "fromParams"), i), "must not be empty"))
        header = self.output_payload_to_header
        if header and not _HEADER_NAME.match(header):
            issues.append((join(path, "outputPayloadToHeader"), f'"{header}" is not a header name'))
        return issues

    def rule(self, policy: str) -> JwtRule:
        return JwtRule(
            policy=policy,
            issuer=self.issuer,
            audiences=self.audiences,
            jwks_uri=self.jwks_uri or None,
            jwks=self.jwks or None,
            from_headers=tuple(
                JwtHeader(name=h.name.lower(), prefix=h.prefix) for h in self.from_headers
            ),
            from_params=self.from_params,
            output_payload_to_header=self.output_payload_to_header.lower() or None,
            forward_original_token=self.forward_original_token,
        )


class RequestAuthenticationSpec(Model, frozen=True, kw_only=True):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetRef | None = None
    target_refs: tuple[PolicyTargetRef, ...] = ()
    jwt_rules: tuple[JwtRuleSpec, ...] = ()


class RequestAuthentication(Object, frozen=True, kw_only=True):
    kind_name = "RequestAuthentication"
    api_versions = (f"{ISTIO_SECURITY}/v1", f"{ISTIO_SECURITY}/v1beta1")

    spec: RequestAuthenticationSpec | None = None

    @property
    def body(self) -> RequestAuthenticationSpec:
        return self.spec if self.spec is not None else RequestAuthenticationSpec()

    @property
    def gateways(self) -> tuple[str, ...]:
        return target_gateways(self.namespace, self.body.target_ref, self.body.target_refs)

    def check(self) -> list[FieldIssue]:
        spec = self.body
        issues = scope_issues(
            "spec", self.namespace, spec.selector, spec.target_ref, spec.target_refs
        )
        for i, rule in enumerate(spec.jwt_rules):
            issues += rule.issues(item("spec.jwtRules", i))
        return issues

    def rules(self) -> tuple[JwtRule, ...]:
        policy = f"{self.namespace}/{self.name}"
        return tuple(r.rule(policy) for r in self.body.jwt_rules)


def jwks_uri_problem(uri: str) -> str | None:
    """Istio's rule: an http or https URL with a host."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return f'"{uri}" is not a URL'
    if parts.scheme not in ("http", "https"):
        return f'"{uri}": the scheme must be http or https'
    if not parts.hostname:
        return f'"{uri}" has no host'
    if port == 0:
        return f'"{uri}": port 0 is not a port'
    return None


def jwks_problem(text: str) -> str | None:
    """An inline JWKS must be a JSON object with a ``keys`` list of public keys that the JWT
    library can load (``gateway.filters.jwks`` loads them again, with its algorithm rules)."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        return f"not valid JSON: {e}"
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list) or not doc["keys"]:
        return 'must be a JSON object with a non-empty "keys" list (a JWK Set, RFC 7517)'
    for i, key in enumerate(doc["keys"]):
        if not isinstance(key, dict):
            return f"keys[{i}] is not a JSON object"
        if key.get("use") == "enc":
            continue  # encryption keys are not for signatures; they are skipped
        if key.get("kty") not in ("RSA", "EC", "OKP"):
            return f'keys[{i}]: kty "{key.get("kty")}" is not a public key type (RSA, EC, OKP)'
        # Imported here: PyJWT (and the cryptography backends it loads) costs ~70 ms to
        # import, which every controller and worker would pay for the few inline JWKS.
        import jwt

        try:
            jwt.PyJWK(key)
        except jwt.PyJWTError as e:
            return f"keys[{i}]: {e}"
    return None
