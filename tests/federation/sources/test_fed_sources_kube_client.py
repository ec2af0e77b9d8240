"""``KubeCalls`` sends, through the ``ApiClient``'s generic request path, exactly the request
the typed APIs (``CoreV1Api``, ``DiscoveryV1Api``, ``CustomObjectsApi``) send for the same
list or watch: method, URL with its query, and headers (authentication included). The
``ApiClient`` is real; only its ``call_api`` is replaced by a recorder."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from federation.sources.kinds import SOURCE_KINDS, SourceKind
from federation.sources.kube_client import KubeCalls


class _Answer:
    def __init__(self, status: int) -> None:
        self.status = status
        self.reason = "Gone" if status == 410 else "OK"
        self.data = b'{"kind": "Status", "code": 410}' if status == 410 else b"{}"
        self.headers: dict[str, str] = {}
        self.response = self

    def read(self) -> bytes:
        return self.data

    def getheaders(self) -> dict[str, str]:
        return self.headers


def _api(status: int = 200) -> tuple[Any, list[tuple[Any, ...]]]:
    cfg = client.Configuration(host="https://kube.example:6443")
    cfg.api_key = {"authorization": "secret-token"}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    api = client.ApiClient(cfg)
    seen: list[tuple[Any, ...]] = []

    def call_api(method: str, url: str, header_params: Any = None, body: Any = None,
                 post_params: Any = None, _request_timeout: Any = None) -> _Answer:  # fmt: skip
        seen.append((method, url, header_params, body, _request_timeout))
        return _Answer(status)

    api.call_api = call_api
    return api, seen


def _typed(api: Any, kind: SourceKind, api_version: str, params: dict[str, Any]) -> None:
    """The call the typed APIs make for ``kind`` (what KubeCalls did before)."""
    params = {**params, "_preload_content": False}
    if kind.field_selector:
        params["field_selector"] = kind.field_selector
    if api_version == "v1":
        core = client.CoreV1Api(api)
        method = {
            "Service": core.list_service_for_all_namespaces,
            "Pod": core.list_pod_for_all_namespaces,
            "Secret": core.list_secret_for_all_namespaces,
            "Node": core.list_node,
        }[kind.kind]
        method(**params)
    elif api_version == "discovery.k8s.io/v1":
        client.DiscoveryV1Api(api).list_endpoint_slice_for_all_namespaces(**params)
    else:
        group, _, version = api_version.partition("/")
        custom = client.CustomObjectsApi(api)
        custom.list_cluster_custom_object(group, version, kind.plural, **params)


CALLS = [
    {"limit": 500, "_request_timeout": (10.0, 60.0)},
    {"limit": 500, "_continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ==", "_request_timeout": (1, 2)},
    {"watch": True, "resource_version": "1234", "allow_watch_bookmarks": True,
     "timeout_seconds": 300, "_request_timeout": (10.0, 330.0)},
]  # fmt: skip


@pytest.mark.parametrize("kind", SOURCE_KINDS, ids=lambda k: k.kind)
@pytest.mark.parametrize("params", CALLS, ids=["list", "continue", "watch"])
def test_the_request_is_the_typed_apis(kind: SourceKind, params: dict[str, Any]) -> None:
    for api_version in kind.api_versions:
        ours, ours_seen = _api()
        theirs, theirs_seen = _api()
        response = KubeCalls(ours).call(kind, api_version, **params)
        _typed(theirs, kind, api_version, params)
        assert ours_seen == theirs_seen
        assert isinstance(response, _Answer)  # the raw response, as _preload_content=False
        assert ours_seen[0][2]["authorization"] == "Bearer secret-token"


def test_an_error_status_raises_as_the_typed_apis_do() -> None:
    kind = SOURCE_KINDS[0]
    ours, _ = _api(410)
    theirs, _ = _api(410)
    with pytest.raises(ApiException) as got:
        KubeCalls(ours).call(kind, kind.api_versions[0], limit=1)
    with pytest.raises(ApiException) as want:
        _typed(theirs, kind, kind.api_versions[0], {"limit": 1})
    assert type(got.value) is type(want.value)
    assert got.value.status == want.value.status == 410
