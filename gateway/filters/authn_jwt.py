"""The authn filter: Istio ``RequestAuthentication`` (JWT) for one listener.

Built by ``gateway.filters.listener_security`` from the ``JwtRule`` list of a listener and
a function that gives each rule's key source (a shared, background-fetched one for a
``jwksUri``, see ``jwks_fetch``; a fixed one for an inline ``jwks``). It runs on the request
path of every request on the listener, before authz and routing.

* **Where tokens are read.** Each rule reads its ``fromHeaders`` (the value after the
  ``prefix``) and ``fromParams``; a rule with neither reads ``Authorization: Bearer <token>``
  (the scheme compared without regard to case) and the ``access_token`` query parameter, as
  Istio does. A token found at a location is checked against the rules that read that
  location (``jwt_verify`` has the checks).
* **No token**: the request passes; authorization decides (``requestPrincipals``).
* **A bad token**: 401 with Envoy's status text as the body (for instance ``Jwt is expired``
  or ``Jwt verification fails``) and ``www-authenticate: Bearer realm="<url>",
  error="invalid_token"``, the URL without its query; 403 for a disallowed audience, as
  Envoy answers. A gRPC request gets ``grpc-status`` 16 (UNAUTHENTICATED; 7 for 403).
  Every token a request carries must be valid.
* **A good token**: its claims go on ``RequestContext.jwt_payload`` (``request.auth.*`` for
  authz). Unless the rule sets ``forwardOriginalToken``, the header or query parameter that
  carried it is removed before the request goes upstream. With ``outputPayloadToHeader``,
  that header carries the token's payload (base64url JSON, as in the token). A header of
  that name sent by the client is always removed first, so that it cannot be forged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

from gateway.codec.messages import ResponseHead
from gateway.config.snapshot import JwtRule
from gateway.filters.base import LocalReply, RequestContext
from gateway.filters.grpc_status import grpc_code_for, grpc_reply, is_grpc
from gateway.filters.jwks import JwksSource
from gateway.filters.jwt_verify import Candidate, Failed, Verified, verify

AUTHORIZATION = "authorization"
BEARER = "Bearer "
ACCESS_TOKEN = "access_token"


@dataclass(frozen=True, slots=True)
class _Location:
    """A header (lower-case ``name`` and ``prefix``) or a query parameter (``param``)."""

    name: str
    prefix: str = ""
    param: bool = False


class JwtAuthn:
    __slots__ = ("_headers", "_outputs", "_params")

    def __init__(
        self, rules: Sequence[JwtRule], source_for: Callable[[JwtRule], JwksSource]
    ) -> None:
        """Raises ``ValueError`` when a rule's keys cannot be loaded."""
        by_location: dict[_Location, list[Candidate]] = {}
        for i, rule in enumerate(rules):
            try:
                candidate = Candidate(rule, source_for(rule))
            except ValueError as e:
                raise ValueError(f"RequestAuthentication {rule.policy} jwtRules[{i}]: {e}") from e
            for location in _locations(rule):
                by_location.setdefault(location, []).append(candidate)
        self._headers = tuple((loc, tuple(c)) for loc, c in by_location.items() if not loc.param)
        self._params = tuple((loc, tuple(c)) for loc, c in by_location.items() if loc.param)
        self._outputs = tuple(
            sorted({r.output_payload_to_header for r in rules if r.output_payload_to_header})
        )

    def on_request(self, ctx: RequestContext) -> LocalReply | None:
        request = ctx.request
        if self._outputs:
            outputs = {h.encode("latin-1") for h in self._outputs}
            request.headers = [(k, v) for k, v in request.headers if k not in outputs]
        found: list[tuple[_Location, str, Sequence[Candidate]]] = []
        for location, in_header in self._headers:
            token = self._from_header(ctx, location)
            if token is not None:
                found.append((location, token, in_header))
        if self._params:
            query = _query(request.path)
            if query is not None:
                params = dict(parse_qsl(query, keep_blank_values=True))
                for location, in_param in self._params:
                    token = params.get(location.name)
                    if token:
                        found.append((location, token, in_param))
        if not found:
            return None
        verified: list[tuple[_Location, Verified]] = []
        for location, token, candidates in found:
            result = verify(token, candidates)
            if isinstance(result, Failed):
                return _reply(ctx, result)
            verified.append((location, result))
        ctx.jwt_payload = verified[0][1].payload
        for location, result in verified:
            rule = result.rule
            if not rule.forward_original_token:
                _remove(ctx, location)
            if rule.output_payload_to_header:
                name = rule.output_payload_to_header.encode("latin-1")
                request.headers = [(k, v) for k, v in request.headers if k != name]
                request.headers.append((name, result.payload_segment.encode("ascii")))
        return None

    def on_response(self, ctx: RequestContext, response: ResponseHead) -> None:
        pass

    @staticmethod
    def _from_header(ctx: RequestContext, location: _Location) -> str | None:
        value = ctx.request.get(location.name.encode("latin-1"))
        if value is None:
            return None
        text = value.decode("latin-1").strip()
        prefix = location.prefix
        if prefix:
            if location.name == AUTHORIZATION and prefix == BEARER:
                matched = text[: len(prefix)].lower() == prefix.lower()
            else:
                matched = text.startswith(prefix)
            if not matched:
                return None
            text = text[len(prefix) :].strip()
        return text or None

    def __repr__(self) -> str:
        names = [loc.name for loc, _ in self._headers] + [f"?{loc.name}" for loc, _ in self._params]
        return f"<JwtAuthn [{', '.join(names)}]>"


def _locations(rule: JwtRule) -> list[_Location]:
    if not rule.from_headers and not rule.from_params:
        return [_Location(AUTHORIZATION, BEARER), _Location(ACCESS_TOKEN, param=True)]
    return [_Location(h.name, h.prefix) for h in rule.from_headers] + [
        _Location(p, param=True) for p in rule.from_params
    ]


def _query(path: str) -> str | None:
    q = path.find("?")
    return path[q + 1 :] if q >= 0 else None


def _remove(ctx: RequestContext, location: _Location) -> None:
    request = ctx.request
    if not location.param:
        name = location.name.encode("latin-1")
        request.headers = [(k, v) for k, v in request.headers if k != name]
        return
    q = request.path.find("?")
    if q < 0:
        return
    base, query = request.path[:q], request.path[q + 1 :]
    kept = [p for p in query.split("&") if p.split("=", 1)[0] != location.name]
    request.path = base + ("?" + "&".join(kept) if kept else "")


def _reply(ctx: RequestContext, failure: Failed) -> LocalReply:
    request = ctx.request
    path = request.path.split("?", 1)[0]
    scheme = "https" if ctx.downstream_tls or request.scheme == "https" else "http"
    realm = f"{scheme}://{request.authority}{path}"
    challenge = f'Bearer realm="{realm}", error="invalid_token"'.encode("latin-1", "replace")
    headers = [(b"www-authenticate", challenge)]
    status = failure.http_status
    if is_grpc(request):
        return grpc_reply(grpc_code_for(status), failure.status, "", headers)
    return LocalReply(status, headers, failure.status.encode())
