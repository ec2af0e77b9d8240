"""The authz filter: Istio ``AuthorizationPolicy`` enforcement for one listener.

Built by ``gateway.filters.listener_security`` from the ``AuthzPolicy`` list of a listener
(those that apply to it, see ``gateway.config.security``) and the listener's port. It runs
on the request path of every request on the listener, before routing and after JWT
authentication (``authn_jwt``), in Istio's order:

1. If any DENY policy matches, the request is denied.
2. If no ALLOW policy applies, the request is allowed.
3. If any ALLOW policy matches, the request is allowed.
4. Otherwise it is denied.

AUDIT policies never change the decision: a match is only recorded in the
:class:`Decision` (Istio marks the request for an audit plugin). A denied request gets what
Envoy's RBAC filter answers: 403 with the body ``RBAC: access denied`` (a gRPC request: HTTP
200, ``grpc-status: 7`` PERMISSION_DENIED with that message). Envoy sets no response flag for
it (its access log shows ``-`` and the response code details
``rbac_access_denied_matched_policy[<policy>]``, which isthmus's access log has no field
for), so neither does isthmus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.codec.messages import ResponseHead
from gateway.config.snapshot import AuthzPolicy
from gateway.filters.authz_request import RequestAttributes
from gateway.filters.authz_rules import CompiledPolicy, compile_policy
from gateway.filters.base import LocalReply, RequestContext
from gateway.filters.grpc_status import grpc_reply, is_grpc

DENIED_BODY = b"RBAC: access denied"
PERMISSION_DENIED = 7


@dataclass(frozen=True, slots=True)
class Decision:
    """``policy`` is the DENY policy that matched, or the ALLOW policy that allowed the
    request; None when no policy decided (allowed for lack of ALLOW policies, or denied for
    lack of a match). ``audited`` names the AUDIT policies that matched."""

    allowed: bool
    policy: str | None = None
    audited: tuple[str, ...] = ()


class Authz:
    __slots__ = ("_allow", "_audit", "_deny", "port")

    def __init__(self, policies: Sequence[AuthzPolicy], port: int) -> None:
        """Raises ``ValueError`` naming the policy and field that cannot be compiled."""
        compiled = [compile_policy(p) for p in policies]
        self._deny = tuple(p for p in compiled if p.action == "DENY")
        self._allow = tuple(p for p in compiled if p.action == "ALLOW")
        self._audit = tuple(p for p in compiled if p.action == "AUDIT")
        self.port = port

    def decide(self, ctx: RequestContext) -> Decision:
        attrs = RequestAttributes(ctx, self.port)
        audited = tuple(p.name for p in self._audit if p.matches(attrs))
        for p in self._deny:
            if p.matches(attrs):
                return Decision(False, p.name, audited)
        if not self._allow:
            return Decision(True, None, audited)
        for p in self._allow:
            if p.matches(attrs):
                return Decision(True, p.name, audited)
        return Decision(False, None, audited)

    def on_request(self, ctx: RequestContext) -> LocalReply | None:
        if self.decide(ctx).allowed:
            return None
        if is_grpc(ctx.request):
            return grpc_reply(PERMISSION_DENIED, DENIED_BODY.decode(), "")
        return LocalReply(403, [], DENIED_BODY)

    def on_response(self, ctx: RequestContext, response: ResponseHead) -> None:
        pass

    def __repr__(self) -> str:
        return (
            f"<Authz port {self.port} [{len(self._deny)} deny, {len(self._allow)} allow, "
            f"{len(self._audit)} audit]>"
        )


__all__ = ["DENIED_BODY", "Authz", "CompiledPolicy", "Decision"]
