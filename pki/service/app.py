"""The CA service as a Starlette app: ``POST /v1/certificates`` signs a CSR for a bearer token.

Built by :func:`build_app`; served over TLS by :mod:`pki.service.server` (``isthmus pki serve``)
and embedded by the federation controller. The wire format is :mod:`pki.service.protocol`.

One request goes through these steps; the first that fails answers, and every answer (issued
or refused) writes one audit line:

1. a declared ``Content-Length`` above the limit: 413, before reading anything;
2. no ``Authorization: Bearer <token>``: 401 with ``WWW-Authenticate: Bearer``;
3. the body, read chunk by chunk and refused with 413 as soon as it passes the limit;
4. the token, checked by the :class:`~pki.service.tokens.TokenChecker`: 401 when refused,
   503 when it cannot be checked (the Kubernetes API is down);
5. the per-identity rate limit (keyed by the SPIFFE ID the token proves): 429 + Retry-After;
6. the body and the CSR: 400 (malformed JSON, PEM, signature, names, lifetime);
7. the requested SPIFFE ID against the one the token proves: 403 when they differ;
8. the lifetime: the default when none is asked for; above the maximum, 400 (as Istio's CA
   does: a request is never silently given less than it asked for);
9. signing, then 200 with the leaf, the chain and the trust bundle.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pki.authority import DEFAULT_LEAF_TTL, format_duration
from pki.cacerts import CaCerts
from pki.csr import requested_spiffe_id
from pki.errors import CsrError, IssuanceError
from pki.service import protocol
from pki.service.audit import AuditLog
from pki.service.ratelimit import RateLimiter
from pki.service.tokens import (
    Identity,
    TokenChecker,
    TokenCheckUnavailable,
    TokenRejected,
)
from pki.spiffe import parse_trust_domain

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """What the CA service allows. Durations are ``timedelta``s; sizes are bytes."""

    trust_domain: str
    default_ttl: datetime.timedelta = DEFAULT_LEAF_TTL  # when the request names none
    max_ttl: datetime.timedelta = DEFAULT_LEAF_TTL  # a request above it gets 400
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # a larger body gets 413
    rate_burst: int = 10  # requests at once, per identity
    rate_refill_per_s: float = 1.0  # then this many per second

    def __post_init__(self) -> None:
        object.__setattr__(self, "trust_domain", parse_trust_domain(self.trust_domain))
        if self.default_ttl > self.max_ttl:
            object.__setattr__(self, "default_ttl", self.max_ttl)


class _Refusal(Exception):
    """A refused request: its status, error code, message, headers and extra body fields."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.extra = extra


@dataclass(slots=True)
class _Audit:
    """What one request's audit line says; filled in as the request goes."""

    client: str | None
    identity: str | None = None
    spiffe_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


CaSource = Callable[[], CaCerts]


def build_app(
    ca: CaCerts | CaSource,
    checker: TokenChecker,
    settings: ServiceSettings,
    *,
    audit: AuditLog,
    limiter: RateLimiter | None = None,
) -> Starlette:
    """The CA service app. ``ca`` is the signing CA and bundle, or a callable returning the
    current ones (read on every request, so the caller may swap them, e.g. after a rotation).
    The caller owns ``audit`` and closes it after the server has stopped. ``limiter`` defaults
    to one built from ``settings``."""
    service = _CaService(
        ca if callable(ca) else (lambda: ca),
        checker,
        settings,
        audit,
        limiter
        if limiter is not None
        else RateLimiter(burst=settings.rate_burst, refill_per_s=settings.rate_refill_per_s),
    )
    if service.ca().authority.trust_domain != settings.trust_domain:
        raise IssuanceError(
            f"the CA is for trust domain {service.ca().authority.trust_domain}, "
            f"not {settings.trust_domain}",
            rule="foreign-trust-domain",
        )
    return Starlette(
        routes=[Route(protocol.PATH, service.post_certificate, methods=["POST"])],
        exception_handlers={HTTPException: _http_exception},  # type: ignore[dict-item]
    )


class _CaService:
    def __init__(
        self,
        ca: CaSource,
        checker: TokenChecker,
        settings: ServiceSettings,
        audit: AuditLog,
        limiter: RateLimiter,
    ) -> None:
        self.ca = ca
        self.checker = checker
        self.settings = settings
        self.audit = audit
        self.limiter = limiter

    async def post_certificate(self, request: Request) -> Response:
        client = f"{request.client.host}:{request.client.port}" if request.client else None
        record = _Audit(client)
        try:
            response = await self._issue(request, record)
        except _Refusal as refusal:
            self._write_audit(record, "refused", refusal.status, refusal.code, refusal.message)
            body = protocol.error_body(refusal.code, refusal.message, **refusal.extra)
            return JSONResponse(body, refusal.status, headers=refusal.headers)
        except Exception:
            log.exception("CA service: unexpected error")
            self._write_audit(record, "refused", 500, "internal", "internal error")
            return JSONResponse(protocol.error_body("internal", "internal error"), 500)
        self._write_audit(record, "issued", 200, None, None)
        return response

    async def _issue(self, request: Request, record: _Audit) -> Response:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        token = _bearer_token(request.headers.get("authorization"))
        body = await _read_body(request, limit)
        identity = await self._authenticate(token)
        record.identity = identity.subject
        proven = identity.spiffe_id(self.settings.trust_domain)
        wait_s = self.limiter.acquire(str(proven))
        if wait_s is not None:
            retry = RateLimiter.retry_after_header(wait_s)
            raise _Refusal(
                429,
                "rate-limited",
                f"too many requests for {proven}: retry in {retry} s",
                {"Retry-After": retry},
                retryAfterSeconds=int(retry),
            )
        try:
            signing = protocol.parse_request(body)
            requested, _ = requested_spiffe_id(signing.csr)
        except (protocol.RequestError, CsrError) as exc:
            raise _Refusal(400, exc.rule, str(exc)) from exc
        record.spiffe_id = str(requested)
        if requested != proven:
            raise _Refusal(
                403,
                "identity-mismatch",
                f"the token proves {proven}; it may not request {requested}",
            )
        ttl = self._ttl(signing.ttl)
        ca = self.ca()
        try:
            leaf, _ = ca.authority.sign_csr(signing.csr, ttl=ttl, max_ttl=self.settings.max_ttl)
        except (IssuanceError, CsrError) as exc:
            raise _Refusal(
                500 if isinstance(exc, IssuanceError) else 400, exc.rule, str(exc)
            ) from exc
        record.fields = {
            "serial": format(leaf.serial_number, "x"),
            "not_after": protocol.rfc3339(leaf.not_valid_after_utc),
        }
        intermediates = ca.authority.full_chain[:-1]  # the root is in the bundle
        document = protocol.answer(requested, leaf, intermediates, ca.bundle)
        return JSONResponse(document, headers={"Cache-Control": "no-store"})

    async def _authenticate(self, token: str) -> Identity:
        try:
            return await self.checker.check(token)
        except TokenRejected as exc:
            raise _unauthenticated(str(exc), error="invalid_token") from exc
        except TokenCheckUnavailable as exc:
            raise _Refusal(503, "token-check-unavailable", str(exc), {"Retry-After": "5"}) from exc

    def _ttl(self, asked: datetime.timedelta | None) -> datetime.timedelta:
        if asked is None:
            return self.settings.default_ttl
        if asked > self.settings.max_ttl:
            raise _Refusal(
                400,
                "ttl-too-long",
                f"the requested lifetime {format_duration(asked)} is above the maximum "
                f"{format_duration(self.settings.max_ttl)}",
            )
        return asked

    def _write_audit(
        self, record: _Audit, outcome: str, status: int, reason: str | None, message: str | None
    ) -> None:
        fields = {"serial": None, "not_after": None, **record.fields}
        self.audit.record(
            outcome=outcome,
            status=status,
            reason=reason,
            message=message,
            identity=record.identity,
            spiffe_id=record.spiffe_id,
            serial=fields["serial"],
            not_after=fields["not_after"],
            client=record.client,
        )


def _bearer_token(header: str | None) -> str:
    if header is None:
        raise _unauthenticated("an Authorization: Bearer <token> header is required")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthenticated("the Authorization header must be 'Bearer <token>'",
                               error="invalid_request")  # fmt: skip
    return token


def _unauthenticated(message: str, *, error: str | None = None) -> _Refusal:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return _Refusal(401, "unauthenticated", message, {"WWW-Authenticate": challenge})


def _too_large(limit: int) -> _Refusal:
    return _Refusal(413, "body-too-large", f"the body is larger than {limit} bytes")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` (never buffered past it)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise _Refusal(400, "client-disconnected", "the client went away mid-body") from exc
    return b"".join(chunks)


async def _http_exception(request: Request, exc: HTTPException) -> Response:
    return JSONResponse(
        protocol.error_body("not-found" if exc.status_code == 404 else "bad-method", exc.detail),
        exc.status_code,
        headers=exc.headers,
    )
