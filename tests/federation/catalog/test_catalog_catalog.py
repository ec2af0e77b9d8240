"""Conformance: catalog register/deregister/services/service and health service, through
py-consul (sync and asyncio), against the embedded catalog or ``CONSUL_HTTP_ADDR``."""

from __future__ import annotations

import json

import consul
import consul.aio
import pytest


def web(uid: str, **extra: object) -> dict[str, object]:
    svc: dict[str, object] = {"Service": f"{uid}-web", "ID": f"{uid}-web-1", "Port": 8080}
    svc.update(extra)
    return svc


def test_register_then_services_lists_name_with_tags(client: consul.Consul, uid: str) -> None:
    assert client.catalog.register(f"{uid}-n1", "10.1.0.1", service=web(uid, Tags=["blue", "v1"]))
    assert client.catalog.register(f"{uid}-n2", "10.1.0.2", service=web(uid, Tags=["green"]))
    index, services = client.catalog.services()
    assert int(index) >= 1
    assert sorted(services[f"{uid}-web"]) == ["blue", "green", "v1"]


def test_catalog_service_entry_shape(client: consul.Consul, uid: str) -> None:
    client.catalog.register(
        f"{uid}-n1",
        "10.1.0.1",
        service=web(uid, Meta={"isthmus-cluster": "east"}, Address=""),
        node_meta={"ignored": "as a query parameter"},
    )
    index, nodes = client.catalog.service(f"{uid}-web")
    assert len(nodes) == 1
    entry = nodes[0]
    assert entry["Node"] == f"{uid}-n1"
    assert entry["Address"] == "10.1.0.1"
    assert entry["Datacenter"]  # the agent's datacenter (dc1 unless configured)
    assert entry["ServiceID"] == f"{uid}-web-1"
    assert entry["ServiceName"] == f"{uid}-web"
    assert entry["ServicePort"] == 8080
    assert entry["ServiceAddress"] == ""  # empty: use the node's Address
    assert entry["ServiceTags"] == []  # null tags become []
    assert entry["ServiceMeta"] == {"isthmus-cluster": "east"}
    assert entry["ModifyIndex"] >= entry["CreateIndex"] >= 1
    assert int(index) >= entry["ModifyIndex"]


def test_service_id_defaults_to_name_and_one_service_per_id(
    client: consul.Consul, uid: str
) -> None:
    node = f"{uid}-n1"
    client.catalog.register(node, "10.1.0.1", service={"Service": f"{uid}-api", "Port": 1})
    client.catalog.register(node, "10.1.0.1", service={"Service": f"{uid}-api", "Port": 2})
    _, nodes = client.catalog.service(f"{uid}-api")
    assert [(n["ServiceID"], n["ServicePort"]) for n in nodes] == [(f"{uid}-api", 2)]


def test_unknown_service_is_empty_list(client: consul.Consul, uid: str) -> None:
    index, nodes = client.catalog.service(f"{uid}-nothing")
    assert nodes == [] and int(index) >= 1
    _, health = client.health.service(f"{uid}-nothing")
    assert health == []


def test_tag_filter(client: consul.Consul, uid: str) -> None:
    client.catalog.register(f"{uid}-a", "10.0.0.1", service=web(uid, Tags=["blue"]))
    client.catalog.register(f"{uid}-b", "10.0.0.2", service=web(uid, Tags=["green"]))
    _, nodes = client.catalog.service(f"{uid}-web", tag="green")
    assert [n["Node"] for n in nodes] == [f"{uid}-b"]
    _, health = client.health.service(f"{uid}-web", tag="blue")
    assert [h["Node"]["Node"] for h in health] == [f"{uid}-a"]


def test_deregister_service_then_node(client: consul.Consul, uid: str) -> None:
    node = f"{uid}-n1"
    client.catalog.register(node, "10.0.0.1", service=web(uid))
    client.catalog.register(node, "10.0.0.1", service={"Service": f"{uid}-db"})
    assert client.catalog.deregister(node, service_id=f"{uid}-web-1")
    _, services = client.catalog.services()
    assert f"{uid}-web" not in services and f"{uid}-db" in services
    assert client.catalog.deregister(node)
    _, services = client.catalog.services()
    assert f"{uid}-db" not in services
    _, found = client.catalog.node(node)
    assert found is None


def test_deregister_check_only(client: consul.Consul, uid: str) -> None:
    node = f"{uid}-n1"
    client.catalog.register(
        node, "10.0.0.1", service=web(uid),
        check={"CheckID": f"{uid}-c", "Status": "critical", "ServiceID": f"{uid}-web-1"},
    )  # fmt: skip
    _, passing = client.health.service(f"{uid}-web", passing=True)
    assert passing == []
    client.catalog.deregister(node, check_id=f"{uid}-c")
    _, passing = client.health.service(f"{uid}-web", passing=True)
    assert [h["Service"]["ID"] for h in passing] == [f"{uid}-web-1"]


def test_health_entry_shape_and_passing_filter(client: consul.Consul, uid: str) -> None:
    for node, status in (("ok", "passing"), ("warn", "warning"), ("bad", "critical")):
        client.catalog.register(
            f"{uid}-{node}",
            "10.0.0.1",
            service=web(uid, Tags=None),
            check={"CheckID": f"{uid}-chk", "Name": "probe", "Status": status,
                   "ServiceID": f"{uid}-web-1"},
        )  # fmt: skip
    _, every = client.health.service(f"{uid}-web")
    assert len(every) == 3
    entry = next(e for e in every if e["Node"]["Node"] == f"{uid}-ok")
    assert entry["Node"]["Address"] == "10.0.0.1"
    assert entry["Service"]["ID"] == f"{uid}-web-1"
    assert entry["Service"]["Tags"] == []
    assert entry["Service"]["Port"] == 8080
    assert entry["Service"]["Weights"] == {"Passing": 1, "Warning": 1}
    [check] = entry["Checks"]
    assert (check["CheckID"], check["Name"], check["Status"], check["ServiceID"]) == (
        f"{uid}-chk", "probe", "passing", f"{uid}-web-1",
    )  # fmt: skip
    _, passing = client.health.service(f"{uid}-web", passing=True)
    assert [e["Node"]["Node"] for e in passing] == [f"{uid}-ok"]


def test_node_level_check_gates_every_service_on_the_node(client: consul.Consul, uid: str) -> None:
    node = f"{uid}-n1"
    client.catalog.register(node, "10.0.0.1", service=web(uid))
    client.catalog.register(node, "10.0.0.1", check={"CheckID": f"{uid}-node", "Status": "warning"})
    _, passing = client.health.service(f"{uid}-web", passing=True)
    assert passing == []
    _, every = client.health.service(f"{uid}-web")
    assert [c["CheckID"] for c in every[0]["Checks"]] == [f"{uid}-node"]


def test_checks_list_registers_several(client: consul.Consul, uid: str) -> None:
    node = f"{uid}-n1"
    body = {
        "Node": node,
        "Address": "10.0.0.1",
        "Service": {"Service": f"{uid}-web"},
        "Checks": [
            {"CheckID": "a", "Status": "passing"},
            {"CheckID": "b", "Status": "passing", "ServiceID": f"{uid}-web"},
        ],
    }
    response = client.http.put(lambda r: r, "/v1/catalog/register", data=json.dumps(body))
    assert response.code == 200
    _, passing = client.health.service(f"{uid}-web", passing=True)
    assert sorted(c["CheckID"] for c in passing[0]["Checks"]) == ["a", "b"]


def test_register_validation_errors_are_500_with_consul_messages(
    client: consul.Consul, uid: str
) -> None:
    with pytest.raises(consul.ConsulException, match="Must provide node"):
        client.catalog.register("", "10.0.0.1")
    with pytest.raises(consul.ConsulException, match="Must provide address"):
        client.catalog.register(f"{uid}-n", "")
    with pytest.raises(consul.ConsulException, match="Must provide service name"):
        client.catalog.register(f"{uid}-n", "10.0.0.1", service={"ID": "only-an-id"})
    with pytest.raises(consul.ConsulException, match="Must provide node"):
        client.catalog.deregister("")
    _, services = client.catalog.services()
    assert not any(name.startswith(uid) for name in services)


async def test_aio_register_query_deregister(aclient: consul.aio.Consul, uid: str) -> None:
    assert await aclient.catalog.register(f"{uid}-n1", "10.2.0.1", service=web(uid))
    index, services = await aclient.catalog.services()
    assert f"{uid}-web" in services and int(index) >= 1
    _, nodes = await aclient.catalog.service(f"{uid}-web")
    assert nodes[0]["Address"] == "10.2.0.1"
    _, health = await aclient.health.service(f"{uid}-web", passing=True)
    assert [h["Service"]["Service"] for h in health] == [f"{uid}-web"]
    assert await aclient.catalog.deregister(f"{uid}-n1")
    _, nodes = await aclient.catalog.service(f"{uid}-web")
    assert nodes == []


def test_status_leader_is_an_address(client: consul.Consul) -> None:
    leader = client.status.leader()
    host, _sep, port = leader.rpartition(":")
    assert host and port.isdigit()
