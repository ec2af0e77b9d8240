"""The API double's object writes and errors through the official client: metadata, conflicts,
Status bodies (401/404/409/410/422/400), patches, the status subresource, custom resources via
CustomObjectsApi, EndpointSlices via DiscoveryV1Api, and bad input that leaves it working."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client, watch

from tests.support.kube_api import KubeApiDouble


def status_of(exc: client.ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def svc_body(name: str, port: int = 80) -> client.V1Service:
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(name="http", port=port)]),
    )


def test_requests_without_the_token_get_401(kube: KubeApiDouble) -> None:
    for token in (None, "wrong"):
        cfg = kube.configuration()
        cfg.api_key = {} if token is None else {"authorization": f"Bearer {token}"}
        core = client.CoreV1Api(client.ApiClient(cfg))
        with pytest.raises(client.ApiException) as info:
            core.list_namespaced_service("default")
        assert info.value.status == 401
        assert status_of(info.value) == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }
    # a registered service-account token is a valid credential too
    sa_token = kube.register_service_account_token("default", "reader")
    core = client.CoreV1Api(kube.api_client(token=sa_token))
    assert core.list_namespaced_service("default").items == []


def test_create_sets_metadata_and_get_returns_it(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    core = client.CoreV1Api(api)
    mine: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "default"},
        "data": {"k": "v"},
    }
    kube.create(mine)
    mine["data"]["k"] = "changed by the test afterwards"
    assert core.read_namespaced_config_map("c", "default").data == {"k": "v"}  # a copy was kept
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="shop")))
    created = core.create_namespaced_service("shop", svc_body("web"))
    meta = created.metadata
    assert meta.namespace == "shop"
    assert meta.uid and meta.creation_timestamp is not None
    assert meta.generation == 1
    assert meta.resource_version == str(kube.resource_version)
    assert created.spec.cluster_ip and created.spec.ports[0].protocol == "TCP"
    fetched = core.read_namespaced_service("web", "shop")
    assert fetched.metadata.uid == meta.uid
    assert fetched.kind == "Service" and fetched.api_version == "v1"


def test_not_found_and_already_exists_statuses(kube: KubeApiDouble, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    with pytest.raises(client.ApiException) as info:
        core.read_namespaced_service("missing", "default")
    assert info.value.status == 404
    assert status_of(info.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'services "missing" not found',
        "reason": "NotFound",
        "details": {"name": "missing", "kind": "services"},
        "code": 404,
    }
    core.create_namespaced_service("default", svc_body("web"))
    with pytest.raises(client.ApiException) as info:
        core.create_namespaced_service("default", svc_body("web"))
    assert info.value.status == 409
    assert status_of(info.value)["reason"] == "AlreadyExists"
    assert status_of(info.value)["message"] == 'services "web" already exists'
    with pytest.raises(client.ApiException) as info:
        core.create_namespaced_service("no-such-namespace", svc_body("web"))
    assert info.value.status == 404
    assert status_of(info.value)["message"] == 'namespaces "no-such-namespace" not found'


def test_stale_resource_version_update_is_a_conflict(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    core = client.CoreV1Api(api)
    stale = core.create_namespaced_service("default", svc_body("web"))
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 81}]},
        }
    )
    stale.spec.ports[0].port = 82
    with pytest.raises(client.ApiException) as info:
        core.replace_namespaced_service("web", "default", stale)
    assert info.value.status == 409
    assert status_of(info.value)["reason"] == "Conflict"
    assert status_of(info.value)["message"].startswith(
        'Operation cannot be fulfilled on services "web": the object has been modified'
    )
    fresh = core.read_namespaced_service("web", "default")
    fresh.spec.ports[0].port = 82
    replaced = core.replace_namespaced_service("web", "default", fresh)
    assert replaced.spec.ports[0].port == 82
    assert replaced.metadata.generation == 3
    assert replaced.spec.cluster_ip == fresh.spec.cluster_ip
    # a replace that changes nothing is a no-op: no new resourceVersion
    again = core.replace_namespaced_service("web", "default", replaced)
    assert again.metadata.resource_version == replaced.metadata.resource_version


def test_invalid_objects_get_422(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    with pytest.raises(client.ApiException) as info:
        core.create_namespaced_service("default", svc_body("Bad_Name"))
    assert info.value.status == 422
    body = status_of(info.value)
    assert body["reason"] == "Invalid"
    assert body["message"].startswith('Service "Bad_Name" is invalid: metadata.name: Invalid value')
    assert body["details"]["kind"] == "Service"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    discovery = client.DiscoveryV1Api(api)
    bad_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-1"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["not-an-ip"]}],
    }
    with pytest.raises(client.ApiException) as info:
        discovery.create_namespaced_endpoint_slice("default", bad_slice)
    assert info.value.status == 422
    body = status_of(info.value)
    assert body["details"]["group"] == "discovery.k8s.io"
    assert body["details"]["causes"][0]["field"] == "endpoints[0].addresses[0]"


def test_endpoint_slices_via_discovery_api(kube: KubeApiDouble, api: client.ApiClient) -> None:
    discovery = client.DiscoveryV1Api(api)
    kube.create(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "web-abc",
                "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": ["10.1.0.5"],
                    "conditions": {"ready": True},
                    "nodeName": "n1",
                    "zone": "eu-1a",
                    "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop"},
                },
                {"addresses": ["10.1.0.6"], "conditions": {"ready": False, "terminating": True}},
            ],
            "ports": [{"name": "http", "port": 8080, "appProtocol": "http"}],
        }
    )
    slices = discovery.list_namespaced_endpoint_slice(
        "shop", label_selector="kubernetes.io/service-name=web"
    )
    (es,) = slices.items
    assert es.address_type == "IPv4"
    assert es.endpoints[0].zone == "eu-1a" and es.endpoints[0].target_ref.name == "web-1"
    assert es.endpoints[1].conditions.terminating is True
    assert es.ports[0].protocol == "TCP" and es.ports[0].app_protocol == "http"
    events = watch.Watch().stream(
        discovery.list_endpoint_slice_for_all_namespaces, timeout_seconds=1
    )
    (added,) = list(events)
    assert isinstance(added["object"], client.V1EndpointSlice)
    deleted = discovery.delete_namespaced_endpoint_slice("web-abc", "shop")
    assert deleted["status"] == "Success"  # the client types it "object": a Status or the slice
    assert deleted["details"] == {
        "name": "web-abc",
        "group": "discovery.k8s.io",
        "kind": "endpointslices",
        "uid": es.metadata.uid,
    }


def test_custom_resources_via_custom_objects_api(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    custom = client.CustomObjectsApi(api)
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "shop"},
        "spec": {
            "parentRefs": [{"name": "ingress"}],
            "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
        },
    }
    created = custom.create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", "default", "httproutes", route
    )
    assert created["metadata"]["generation"] == 1
    listed = custom.list_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", "default", "httproutes"
    )
    assert listed["kind"] == "HTTPRouteList"
    assert listed["items"][0]["kind"] == "HTTPRoute"  # custom resource items keep their kind
    everywhere = custom.list_cluster_custom_object("gateway.networking.k8s.io", "v1", "httproutes")
    assert [i["metadata"]["name"] for i in everywhere["items"]] == ["shop"]
    patched = custom.patch_namespaced_custom_object(
        "gateway.networking.k8s.io",
        "v1",
        "default",
        "httproutes",
        "shop",
        {"spec": {"hostnames": ["shop.example"]}},
    )
    assert patched["spec"]["hostnames"] == ["shop.example"]
    assert patched["spec"]["parentRefs"] == [{"name": "ingress"}]
    assert patched["metadata"]["generation"] == 2
    # status goes through the status subresource, without touching the generation
    with_status = custom.patch_namespaced_custom_object_status(
        "gateway.networking.k8s.io",
        "v1",
        "default",
        "httproutes",
        "shop",
        {"status": {"parents": []}},
    )
    assert with_status["status"] == {"parents": []}
    assert with_status["metadata"]["generation"] == 2
    # a write to the main resource keeps the stored status
    with_status["status"] = {"parents": [{"controllerName": "x"}]}
    replaced = custom.replace_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", "default", "httproutes", "shop", with_status
    )
    assert replaced["status"] == {"parents": []}
    for group, version, plural, kind in [
        ("multicluster.x-k8s.io", "v1alpha1", "serviceexports", "ServiceExport"),
        ("gateway.networking.k8s.io", "v1alpha2", "tlsroutes", "TLSRoute"),
        ("networking.istio.io", "v1", "destinationrules", "DestinationRule"),
        ("security.istio.io", "v1", "authorizationpolicies", "AuthorizationPolicy"),
        ("isthmus.dev", "v1alpha1", "ratelimits", "RateLimit"),
    ]:
        body = {"apiVersion": f"{group}/{version}", "kind": kind, "metadata": {"name": "web"}}
        custom.create_namespaced_custom_object(group, version, "default", plural, body)
        got = custom.get_namespaced_custom_object(group, version, "default", plural, "web")
        assert got["kind"] == kind
    deleted = custom.delete_namespaced_custom_object(
        "multicluster.x-k8s.io", "v1alpha1", "default", "serviceexports", "web"
    )
    assert deleted["kind"] == "ServiceExport"
    with pytest.raises(client.ApiException) as info:
        custom.get_namespaced_custom_object(
            "multicluster.x-k8s.io", "v1alpha1", "default", "serviceexports", "web"
        )
    assert info.value.status == 404
    assert status_of(info.value)["message"] == (
        'serviceexports.multicluster.x-k8s.io "web" not found'
    )
    assert kube.get("isthmus.dev/v1alpha1", "RateLimit", "web")["metadata"]["name"] == "web"


def test_json_patch_and_strategic_merge(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service("default", svc_body("web"))
    patched = core.patch_namespaced_service(
        "web", "default", [{"op": "add", "path": "/metadata/labels", "value": {"app": "web"}}]
    )
    assert patched.metadata.labels == {"app": "web"}
    merged = core.patch_namespaced_service(
        "web", "default", {"metadata": {"annotations": {"a": "1"}}}
    )
    assert merged.metadata.labels == {"app": "web"} and merged.metadata.annotations == {"a": "1"}
    with pytest.raises(client.ApiException) as info:
        core.patch_namespaced_service(
            "web", "default", [{"op": "test", "path": "/metadata/name", "value": "other"}]
        )
    assert info.value.status == 422


def test_delete_returns_what_kube_apiserver_returns(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service("default", svc_body("web"))
    gone = core.delete_namespaced_service("web", "default")
    assert gone.metadata.name == "web"
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "tls", "namespace": "shop"},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": "x", "tls.key": "y"},
        }
    )
    assert core.read_namespaced_secret("tls", "shop").data == {"tls.crt": "eA==", "tls.key": "eQ=="}
    assert core.delete_namespaced_secret("tls", "shop")["status"] == "Success"
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "api", "namespace": "shop"},
            "spec": {"ports": [{"port": 80}]},
        }
    )
    core.delete_namespace("shop")
    assert kube.list_objects("v1", "Service", "shop") == []
    with pytest.raises(client.ApiException) as info:
        core.delete_namespaced_service("web", "default")
    assert info.value.status == 404


def test_malformed_bodies_get_400_and_the_double_keeps_working(
    kube: KubeApiDouble, api: client.ApiClient
) -> None:
    pool = api.rest_client.pool_manager  # the client's own transport, to send raw bytes
    headers = {"Authorization": f"Bearer {kube.token}", "Content-Type": "application/json"}
    url = f"{kube.url}/api/v1/namespaces/default/services"
    for raw in (b"{not json", b"\xff\xfe", b"[1, 2]", b'"a string"'):
        resp = pool.request("POST", url, body=raw, headers=headers)
        assert resp.status == 400, raw
        body = json.loads(resp.data)
        assert body["kind"] == "Status" and body["reason"] == "BadRequest" and body["code"] == 400
    resp = pool.request(
        "POST", url, body=json.dumps({"apiVersion": "v2", "kind": "Service"}), headers=headers
    )
    assert resp.status == 400
    resp = pool.request(
        "POST", url, body=b"{}", headers={**headers, "Content-Type": "application/x-bogus"}
    )
    assert resp.status == 415
    resp = pool.request("POST", url, body=b"x" * (3 * 1024 * 1024 + 1), headers=headers)
    assert resp.status == 413
    resp = pool.request("GET", f"{kube.url}/apis/nothing.example/v1/things", headers=headers)
    assert resp.status == 404 and json.loads(resp.data)["kind"] == "Status"
    core = client.CoreV1Api(api)
    assert core.create_namespaced_service("default", svc_body("web")).metadata.name == "web"
    assert [s.metadata.name for s in core.list_namespaced_service("default").items] == ["web"]
