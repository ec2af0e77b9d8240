"""TokenReview on the API double, through ``AuthenticationV1Api.create_token_review``, as the CA
service will call it: authenticated service-account tokens, pod-bound extras, audiences, and
the unauthenticated answers."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from tests.support.kube_api import KubeApiDouble


def review(
    api: client.ApiClient, token: str, audiences: list[str] | None = None
) -> client.V1TokenReview:
    spec = client.V1TokenReviewSpec(token=token, audiences=audiences)
    result: client.V1TokenReview = client.AuthenticationV1Api(api).create_token_review(
        client.V1TokenReview(api_version="authentication.k8s.io/v1", kind="TokenReview", spec=spec)
    )
    return result


def test_a_registered_service_account_token_is_authenticated(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    token = kube.register_service_account_token("shop", "web")
    result = review(api, token)
    assert result.kind == "TokenReview"
    assert result.status.authenticated is True
    assert result.status.error is None
    user = result.status.user
    assert user.username == "system:serviceaccount:shop:web"
    assert user.uid
    assert user.groups == [
        "system:serviceaccounts",
        "system:serviceaccounts:shop",
        "system:authenticated",
    ]
    assert user.extra is None  # not bound to a pod
    assert result.status.audiences == list(kube.tokens.api_audiences)
    # the same service account keeps its uid across tokens
    other = review(api, kube.register_service_account_token("shop", "web"))
    assert other.status.user.uid == user.uid


def test_a_pod_bound_token_carries_the_pod_in_extra(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    token = kube.register_service_account_token(
        "shop", "web", pod_name="web-7d9f", pod_uid="0b3c6a52-7f0e-4a7c-9d55-1f3b2a7d9e01"
    )
    extra = review(api, token).status.user.extra
    assert extra["authentication.kubernetes.io/pod-name"] == ["web-7d9f"]
    assert extra["authentication.kubernetes.io/pod-uid"] == ["0b3c6a52-7f0e-4a7c-9d55-1f3b2a7d9e01"]


def test_audiences_are_intersected_and_checked(kube: KubeApiDouble, api: client.ApiClient) -> None:
    token = kube.register_service_account_token("shop", "web", audiences=("isthmus-ca", "vault"))
    ok = review(api, token, audiences=["other", "isthmus-ca"])
    assert ok.status.authenticated is True
    assert ok.status.audiences == ["isthmus-ca"]
    wrong = review(api, token, audiences=["someone-else"])
    assert not wrong.status.authenticated
    assert wrong.status.user.username is None
    assert "invalid for the target audiences" in wrong.status.error
    # without spec.audiences the API server's own audiences apply, which this token lacks
    assert not review(api, token).status.authenticated


def test_unknown_expired_and_revoked_tokens_are_not_authenticated(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    unknown = review(api, "not-a-token")
    assert not unknown.status.authenticated
    assert unknown.status.error
    assert unknown.status.user.username is None
    expired = kube.register_service_account_token("shop", "web")
    kube.expire_token(expired)
    assert "expired" in review(api, expired).status.error
    revoked = kube.register_service_account_token("shop", "web")
    kube.revoke_token(revoked)
    assert not review(api, revoked).status.authenticated
    short = kube.register_service_account_token("shop", "web", expires_in_s=3600)
    assert review(api, short).status.authenticated is True


def test_the_raw_answer_is_201_with_the_spec_echoed(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    token = kube.register_service_account_token("shop", "web")
    raw = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": list(kube.tokens.api_audiences)},
    }
    resp = api.rest_client.pool_manager.request(
        "POST",
        f"{kube.url}/apis/authentication.k8s.io/v1/tokenreviews",
        body=json.dumps(raw),
        headers={"Authorization": f"Bearer {kube.token}", "Content-Type": "application/json"},
    )
    assert resp.status == 201
    body = json.loads(resp.data)
    assert body["apiVersion"] == "authentication.k8s.io/v1" and body["kind"] == "TokenReview"
    assert body["spec"] == raw["spec"]
    assert body["metadata"] == {"creationTimestamp": None}
    assert body["status"]["authenticated"] is True
    # unauthenticated: Go's omitempty drops the false bool and leaves an empty user
    raw["spec"]["token"] = "unknown"
    resp = api.rest_client.pool_manager.request(
        "POST",
        f"{kube.url}/apis/authentication.k8s.io/v1/tokenreviews",
        body=json.dumps(raw),
        headers={"Authorization": f"Bearer {kube.token}", "Content-Type": "application/json"},
    )
    assert resp.status == 201
    status = json.loads(resp.data)["status"]
    assert set(status) == {"user", "error"}
    assert status["user"] == {}


def test_a_review_without_a_token_is_a_bad_request(api: client.ApiClient) -> None:
    with pytest.raises(client.ApiException) as info:
        review(api, "")
    assert info.value.status == 400
    assert json.loads(info.value.body)["reason"] == "BadRequest"


def test_reviews_need_an_authenticated_caller(kube: KubeApiDouble) -> None:
    cfg = kube.configuration(token="nobody")
    with pytest.raises(client.ApiException) as info:
        review(client.ApiClient(cfg), kube.register_service_account_token("shop", "web"))
    assert info.value.status == 401
