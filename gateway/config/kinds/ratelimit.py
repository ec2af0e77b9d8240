"""``isthmus.dev/v1alpha1 RateLimit``: a local token bucket attached to route rules.

A route rule uses it through a Gateway API filter
``{type: ExtensionRef, extensionRef: {group: isthmus.dev, kind: RateLimit, name: X}}`` naming
an object in the route's namespace. The loader validates it; ``gateway.config.translate``
resolves the reference and calls :meth:`RateLimit.filter` to get the snapshot
``RateLimitFilter``, which ``gateway.filters.rate_limit`` runs.

The bucket follows Envoy's local rate limit ``token_bucket``:

=====================  ===================================================================
spec field             meaning
=====================  ===================================================================
``maxTokens``          bucket size: the burst allowed after a quiet period (>= 1, required)
``tokensPerFill``      tokens added at each fill, never beyond ``maxTokens`` (>= 1; default
                       1, as in Envoy)
``fillInterval``       time between fills, a GEP-2257 duration of at least 50ms (required)
``key.type``           what gets its own bucket: ``Route`` (one bucket for the rule, the
                       default), ``Header`` (one per value of ``key.header``), ``ClientIP``
                       (one per downstream address) or ``PeerIdentity`` (one per mTLS peer
                       SPIFFE ID; plaintext peers fall back to their address)
``key.header``         the header whose value is the key; required for ``Header`` only
``responseHeaders``    add ``RateLimit-Limit/Remaining/Reset`` to allowed responses too
                       (default true); the 429 always carries them and ``Retry-After``
=====================  ===================================================================

A bucket starts full. Buckets belong to the rule that references the RateLimit: two rules
that reference the same object count separately. They are shared by the worker processes of
one proxy, and survive a configuration reload as long as the rule and the bucket fields stay
the same.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from gateway.config.kinds.meta import (
    ISTHMUS_GROUP,
    Duration,
    HeaderName,
    Object,
    parse_duration,
)
from gateway.config.schema import FieldIssue, Model
from gateway.config.snapshot import RateLimitFilter

MIN_FILL_INTERVAL_S = 0.05  # Envoy refuses shorter intervals too
Tokens = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]


class RateLimitKeySpec(Model, frozen=True, kw_only=True):
    type: Literal["Route", "Header", "ClientIP", "PeerIdentity"] = "Route"
    header: HeaderName | None = None


class RateLimitSpec(Model, frozen=True, kw_only=True):
    max_tokens: Tokens
    tokens_per_fill: Tokens = 1
    fill_interval: Duration
    key: RateLimitKeySpec = RateLimitKeySpec()
    response_headers: bool = True


class RateLimit(Object, frozen=True, kw_only=True):
    kind_name = "RateLimit"
    api_versions = (f"{ISTHMUS_GROUP}/v1alpha1",)

    spec: RateLimitSpec

    def check(self) -> list[FieldIssue]:
        issues: list[FieldIssue] = []
        spec = self.spec
        interval = parse_duration(spec.fill_interval)
        if interval < MIN_FILL_INTERVAL_S:
            issues.append(
                ("spec.fillInterval", f"{spec.fill_interval} is shorter than the minimum of 50ms")
            )
        if spec.tokens_per_fill > spec.max_tokens:
            issues.append(
                (
                    "spec.tokensPerFill",
                    f"{spec.tokens_per_fill} is more than maxTokens ({spec.max_tokens})",
                )
            )
        if spec.key.type == "Header" and spec.key.header is None:
            issues.append(("spec.key.header", "required when type is Header"))
        if spec.key.type != "Header" and spec.key.header is not None:
            issues.append(("spec.key.header", f"must not be set when type is {spec.key.type}"))
        return issues

    def filter(self, scope: str) -> RateLimitFilter:
        """The snapshot filter for the rule named by ``scope`` (its buckets' namespace)."""
        spec = self.spec
        return RateLimitFilter(
            name=f"{self.namespace}/{self.name}",
            scope=scope,
            max_tokens=spec.max_tokens,
            tokens_per_fill=spec.tokens_per_fill,
            fill_interval_s=parse_duration(spec.fill_interval),
            key=spec.key.type,
            header=spec.key.header.lower() if spec.key.header else None,
            response_headers=spec.response_headers,
        )
