"""Kubernetes TokenReview: the token checker of the CA service inside a cluster.

``isthmus pki serve --kubeconfig F | --in-cluster`` (and the federation controller) build a
:class:`TokenReviewChecker` over an ``ApiClient`` from :func:`kube_api_client`; the CA service
calls :meth:`TokenReviewChecker.check`. It POSTs a ``TokenReview`` through the official
``kubernetes`` client (kubernetes-api.md, "TokenReview"):

- ``spec.audiences`` are the audiences the CA accepts (default ``isthmus-ca``: a pod mounts a
  projected token for that audience, so a token meant for something else is not replayable
  here); an empty tuple asks for the API server's own audiences;
- the token is accepted when ``status.authenticated`` is true, ``status.audiences`` (when we
  asked for some) shares one with ours, and the user is ``system:serviceaccount:<ns>:<sa>``.

The ``kubernetes`` client is synchronous; each review runs in a worker thread
(:func:`asyncio.to_thread`) so the event loop never waits on the API server. An API server that
cannot be reached, or that refuses the CA's own credentials, is :class:`TokenCheckUnavailable`
(503), never a bad token.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from pki.service.tokens import (
    Identity,
    TokenCheckUnavailable,
    TokenRejected,
    identity_from_username,
)

log = logging.getLogger(__name__)

DEFAULT_AUDIENCES: tuple[str, ...] = ("isthmus-ca",)
DEFAULT_TIMEOUT_S = 5.0


class TokenReviewChecker:
    """Checks tokens with TokenReviews (see the module docstring). Thread-safe."""

    def __init__(
        self,
        api_client: Any,
        *,
        audiences: tuple[str, ...] = DEFAULT_AUDIENCES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.audiences = audiences
        self.timeout_s = timeout_s
        self._api = k8s_client.AuthenticationV1Api(api_client)

    async def check(self, token: str) -> Identity:
        status = await asyncio.to_thread(self._review, token)
        if not getattr(status, "authenticated", False):
            raise TokenRejected(
                f"TokenReview: {getattr(status, 'error', None) or 'not authenticated'}"
            )
        if self.audiences:
            granted = set(getattr(status, "audiences", None) or ())
            if not granted.intersection(self.audiences):
                raise TokenRejected(
                    f"TokenReview: the token is not for audience {', '.join(self.audiences)}"
                )
        user = getattr(status, "user", None)
        username = getattr(user, "username", None)
        if not isinstance(username, str):
            raise TokenRejected("TokenReview: no username in the status")
        return identity_from_username(username)

    def _review(self, token: str) -> Any:
        body = k8s_client.V1TokenReview(
            api_version="authentication.k8s.io/v1",
            kind="TokenReview",
            spec=k8s_client.V1TokenReviewSpec(token=token, audiences=list(self.audiences) or None),
        )
        try:
            review = self._api.create_token_review(body, _request_timeout=self.timeout_s)
        except k8s_client.ApiException as exc:
            log.warning("TokenReview refused by the API server: %s %s", exc.status, exc.reason)
            raise TokenCheckUnavailable(
                f"the Kubernetes API refused the TokenReview ({exc.status} {exc.reason})"
            ) from exc
        except Exception as exc:  # urllib3 connection and timeout errors, DNS failures
            log.warning("TokenReview failed: %s", exc)
            raise TokenCheckUnavailable(f"the Kubernetes API is unreachable ({exc})") from exc
        return review.status


def kube_api_client(*, kubeconfig: Path | None = None, in_cluster: bool = False) -> Any:
    """An ``ApiClient`` from a kubeconfig file, or from the pod's service account."""
    if in_cluster:
        configuration = k8s_client.Configuration()
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return k8s_client.ApiClient(configuration)
    if kubeconfig is None:
        raise ValueError("kube_api_client: give a kubeconfig file or in_cluster=True")
    return k8s_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
