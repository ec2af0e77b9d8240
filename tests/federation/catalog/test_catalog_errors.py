"""Conformance: Consul's error statuses and plain-text bodies, and that bad input leaves the
server working. Driven through py-consul's own HTTP client (a callback that keeps the raw
response), as the typed helpers do not expose status codes and headers."""

from __future__ import annotations

import json
from typing import Any

import consul
import pytest
from consul.callback import CB
from consul.exceptions import ClientError


def raw(response: Any) -> Any:
    return response


def assert_still_serving(client: consul.Consul, uid: str) -> None:
    assert client.kv.put(f"{uid}/alive", "yes") is True
    assert client.kv.get(f"{uid}/alive")[1]["Value"] == b"yes"


def test_unknown_v1_path_is_404_plain_text(client: consul.Consul) -> None:
    response = client.http.get(raw, "/v1/no/such/endpoint")
    assert response.code == 404
    assert response.body.strip() == "Invalid URL path: not a recognized HTTP API endpoint"
    assert not response.headers.get("Content-Type", "").startswith("application/json")


def test_wrong_method_is_405_with_allow(client: consul.Consul) -> None:
    response = client.http.get(raw, "/v1/catalog/register")
    assert response.code == 405
    assert response.body == "method GET not allowed"
    assert "PUT" in response.headers["Allow"].split(",")
    response = client.http.post(raw, "/v1/kv/some-key")
    assert response.code == 405
    assert set(response.headers["Allow"].split(",")) >= {"GET", "PUT", "DELETE"}
    with pytest.raises(ClientError, match="405"):
        client.http.delete(CB.boolean(), "/v1/session/list")


@pytest.mark.parametrize(
    "body",
    ["{not json", "", "[1, 2]", '{"Node": "n", "Address": "1.1.1.1", "Service": {"Port": "x"}}',
     '{"Node": 5}'],
)  # fmt: skip
def test_malformed_register_body_is_400_decode_failed(
    client: consul.Consul, uid: str, body: str
) -> None:
    response = client.http.put(raw, "/v1/catalog/register", data=body)
    assert response.code == 400
    assert response.body.startswith("Request decode failed: ")
    assert_still_serving(client, uid)


def test_unknown_fields_are_ignored_as_consul_does(client: consul.Consul, uid: str) -> None:
    body = {
        "node": f"{uid}-n",
        "address": "10.0.0.1",
        "NoSuchField": {"x": 1},
        "WriteRequest": {"Token": ""},
        "service": {"service": f"{uid}-s", "port": 1, "Bogus": True},
    }
    response = client.http.put(raw, "/v1/catalog/register", data=json.dumps(body))
    assert (response.code, response.body) == (200, "true")
    _, nodes = client.catalog.service(f"{uid}-s")
    assert [(n["Node"], n["ServicePort"]) for n in nodes] == [(f"{uid}-n", 1)]


def test_malformed_deregister_body_is_400(client: consul.Consul, uid: str) -> None:
    response = client.http.put(raw, "/v1/catalog/deregister", data='{"Node": ["x"]}')
    assert response.code == 400 and response.body.startswith("Request decode failed")
    assert_still_serving(client, uid)


def test_validation_errors_are_500_plain_text(client: consul.Consul) -> None:
    response = client.http.put(raw, "/v1/catalog/register", data='{"Address": "1.2.3.4"}')
    assert (response.code, response.body) == (500, "Must provide node")
    response = client.http.put(raw, "/v1/catalog/register", data='{"Node": "x"}')
    assert (response.code, response.body) == (
        500,
        "Must provide address if SkipNodeUpdate is not set",
    )


def test_passing_with_a_bad_value_is_400(client: consul.Consul, uid: str) -> None:
    response = client.http.get(raw, f"/v1/health/service/{uid}", params=[("passing", "nope")])
    assert (response.code, response.body) == (400, "Invalid value for ?passing")
    for value in ("", "1", "true"):
        ok = client.http.get(raw, f"/v1/health/service/{uid}", params=[("passing", value)])
        assert ok.code == 200, value


def test_enterprise_namespace_and_partition_are_400(client: consul.Consul, uid: str) -> None:
    for param in ("ns", "partition"):
        response = client.http.get(raw, f"/v1/kv/{uid}/k", params=[(param, "team")])
        assert response.code == 400, param
        assert "Enterprise" in response.body


def test_stale_with_consistent_is_400(client: consul.Consul) -> None:
    response = client.http.get(
        raw, "/v1/catalog/services", params=[("stale", ""), ("consistent", "")]
    )
    assert response.code == 400
    assert response.body == "Cannot specify ?stale with ?consistent, conflicting semantics."


def test_unknown_datacenter_is_500(client: consul.Consul, uid: str) -> None:
    response = client.http.get(raw, f"/v1/kv/{uid}/k", params=[("dc", "no-such-dc")])
    assert response.code == 500
    assert "No path to datacenter" in response.body


def test_bad_flags_value_is_rejected_and_nothing_written(client: consul.Consul, uid: str) -> None:
    response = client.http.put(raw, f"/v1/kv/{uid}/f", params=[("flags", "x")], data=b"v")
    assert response.code in (400, 500)
    assert client.kv.get(f"{uid}/f")[1] is None
    assert_still_serving(client, uid)


def test_token_sources_are_accepted(client: consul.Consul, uid: str) -> None:
    """With ACLs off (dev Consul, and the embedded catalog) any token source is accepted."""
    response = client.http.get(raw, f"/v1/kv/{uid}/x", params=[("token", "")])
    assert response.code == 404
    response = client.http.get(raw, f"/v1/kv/{uid}/x", headers={"X-Consul-Token": ""})
    assert response.code == 404
