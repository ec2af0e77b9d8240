"""Bearer tokens and the identities they prove: the protocol every token checker follows.

The CA service (:mod:`pki.service.app`) calls a :class:`TokenChecker` on the token of each
request and gets an :class:`Identity` back, a Kubernetes namespace and service account; the
SPIFFE ID that identity may ask for is :meth:`Identity.spiffe_id`. Two implementations:
:mod:`pki.service.bootstrap` (a token file, for local runs) and :mod:`pki.service.tokenreview`
(Kubernetes TokenReview). Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from pki.spiffe import SpiffeId, workload_id

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
# Kubernetes object names: a namespace is a DNS-1123 label, a service account a subdomain.
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAMESPACE = re.compile(_LABEL)
_SERVICE_ACCOUNT = re.compile(rf"{_LABEL}(\.{_LABEL})*")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a token proves to be: ``namespace``/``service_account``, and ``subject``, the name
    the checker knows it by (the Kubernetes username, or the bootstrap file's entry), for the
    audit log."""

    namespace: str
    service_account: str
    subject: str

    def __post_init__(self) -> None:
        check_names(self.namespace, self.service_account)

    def spiffe_id(self, trust_domain: str) -> SpiffeId:
        """``spiffe://<td>/ns/<namespace>/sa/<service_account>``: the only ID it may request."""
        return workload_id(trust_domain, self.namespace, self.service_account)


class TokenRejected(Exception):
    """The token is missing, unknown, expired or not meant for us: the answer is 401."""


class TokenCheckUnavailable(Exception):
    """The token could not be checked (the Kubernetes API is unreachable): the answer is 503.

    Kept apart from :class:`TokenRejected` so that an outage is never reported to a client as
    a bad token (it would drop a token that is fine)."""


class TokenChecker(Protocol):
    """Checks one bearer token. Raises :class:`TokenRejected` or :class:`TokenCheckUnavailable`.

    Implementations never block the event loop (a blocking client runs in a thread)."""

    async def check(self, token: str) -> Identity: ...


def identity_from_username(username: str) -> Identity:
    """``system:serviceaccount:<ns>:<sa>`` to an :class:`Identity`; any other user is refused
    (only service accounts get workload certificates)."""
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        raise TokenRejected(f"{username!r} is not a service account")
    namespace, sep, service_account = username[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
    if not sep:
        raise TokenRejected(f"malformed service-account username {username!r}")
    try:
        return Identity(namespace, service_account, username)
    except ValueError as exc:
        raise TokenRejected(f"service-account username {username!r}: {exc}") from exc


def check_names(namespace: str, service_account: str) -> None:
    """Raise ValueError unless both are valid Kubernetes names (so each is one path segment)."""
    if len(namespace) > 63 or not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"namespace {namespace!r} is not a Kubernetes namespace name")
    if len(service_account) > 253 or not _SERVICE_ACCOUNT.fullmatch(service_account):
        raise ValueError(f"service account {service_account!r} is not a Kubernetes name")
