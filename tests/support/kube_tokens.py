"""Service-account tokens and TokenReview for the Kubernetes API double (sans-IO).

The double's tests register tokens with :meth:`TokenRegistry.register`; the HTTP app answers
``POST /apis/authentication.k8s.io/v1/tokenreviews`` with :meth:`TokenRegistry.review`, the way
kube-apiserver does:

- the audiences checked are ``spec.audiences``, or the API server's own audiences when that is
  empty; a token is authenticated only if it is known, not expired and valid for at least one of
  them, and ``status.audiences`` is that intersection;
- ``status.user``: ``system:serviceaccount:<ns>:<sa>``, the service account's uid, the groups
  ``system:serviceaccounts``, ``system:serviceaccounts:<ns>``, ``system:authenticated``, and for
  pod-bound tokens ``extra["authentication.kubernetes.io/pod-name"]`` and ``[.../pod-uid]``;
- otherwise no user and a ``status.error``. As from the real API server (Go ``omitempty`` on a
  bool and a struct), an unauthenticated status has no ``authenticated`` key at all and
  ``user: {}``: the client reads ``status.authenticated`` as ``None``, not ``False``.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

DEFAULT_API_AUDIENCES: tuple[str, ...] = ("https://kubernetes.default.svc.cluster.local",)


@dataclass
class ServiceAccountToken:
    token: str
    namespace: str
    service_account: str
    sa_uid: str
    audiences: tuple[str, ...]
    pod_name: str | None = None
    pod_uid: str | None = None
    expires_at: float | None = None  # time.time() seconds; None never expires
    revoked: bool = False
    credential_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    def user_info(self) -> dict[str, Any]:
        user: dict[str, Any] = {
            "username": self.username,
            "uid": self.sa_uid,
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{self.namespace}",
                "system:authenticated",
            ],
        }
        extra: dict[str, list[str]] = {}
        if self.pod_name is not None:
            extra["authentication.kubernetes.io/pod-name"] = [self.pod_name]
        if self.pod_uid is not None:
            extra["authentication.kubernetes.io/pod-uid"] = [self.pod_uid]
        if self.pod_name is not None:
            extra["authentication.kubernetes.io/credential-id"] = [f"JTI={self.credential_id}"]
        if extra:
            user["extra"] = extra
        return user


class TokenRegistry:
    """Known tokens; thread-safe (the test thread registers, the server thread reviews)."""

    def __init__(self, api_audiences: tuple[str, ...] = DEFAULT_API_AUDIENCES) -> None:
        self.api_audiences = api_audiences
        self._tokens: dict[str, ServiceAccountToken] = {}
        self._sa_uids: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def register(
        self,
        namespace: str,
        service_account: str,
        *,
        token: str | None = None,
        audiences: tuple[str, ...] | None = None,
        pod_name: str | None = None,
        pod_uid: str | None = None,
        expires_in_s: float | None = None,
    ) -> ServiceAccountToken:
        with self._lock:
            sa_uid = self._sa_uids.setdefault((namespace, service_account), str(uuid.uuid4()))
            entry = ServiceAccountToken(
                token=token if token is not None else f"sa.{secrets.token_urlsafe(24)}",
                namespace=namespace,
                service_account=service_account,
                sa_uid=sa_uid,
                audiences=audiences if audiences is not None else self.api_audiences,
                pod_name=pod_name,
                pod_uid=pod_uid if pod_uid is not None or pod_name is None else str(uuid.uuid4()),
                expires_at=None if expires_in_s is None else time.time() + expires_in_s,
            )
            self._tokens[entry.token] = entry
            return entry

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens[token].revoked = True

    def expire(self, token: str) -> None:
        with self._lock:
            self._tokens[token].expires_at = time.time() - 1

    def lookup(self, token: str) -> ServiceAccountToken | None:
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry.revoked:
            return None
        if entry.expires_at is not None and entry.expires_at <= time.time():
            return None
        return entry

    def review(self, spec_token: str, spec_audiences: list[str]) -> dict[str, Any]:
        """The ``status`` of a TokenReview for ``spec.token`` and ``spec.audiences``."""
        wanted = list(spec_audiences) or list(self.api_audiences)
        with self._lock:
            entry = self._tokens.get(spec_token)
        if entry is None:
            return _denied("[invalid bearer token, token lookup failed]")
        if entry.revoked:
            return _denied("[invalid bearer token, service account token has been invalidated]")
        if entry.expires_at is not None and entry.expires_at <= time.time():
            return _denied("[invalid bearer token, Token has expired.]")
        matched = [a for a in wanted if a in entry.audiences]
        if not matched:
            return _denied(
                f"[invalid bearer token, token audiences {_go_list(entry.audiences)} is "
                f"invalid for the target audiences {_go_list(wanted)}]"
            )
        return {"authenticated": True, "user": entry.user_info(), "audiences": matched}


def _denied(error: str) -> dict[str, Any]:
    return {"user": {}, "error": error}


def _go_list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + " ".join(f'"{i}"' for i in items) + "]"
