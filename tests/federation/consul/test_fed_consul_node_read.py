"""The importer's node read (``federation.consul.node_read``): the same request as
py-consul's ``catalog.node``, and an answer with the same values as py-consul's decoding,
against the shared Consul (the embedded catalog, or ``CONSUL_HTTP_ADDR``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import consul
import consul.aio
import pytest

from federation.consul import node_read
from federation.consul.api import ConsulApi
from federation.consul.records import EXPORT_TAG


class _Recorder:
    """Stands in for ``Consul.http``: records the GET it is asked for, answers nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any]] = []

    def get(self, callback: Any, path: str, params: Any = None, headers: Any = None) -> None:
        self.calls.append((path, params, headers))


@pytest.mark.parametrize(
    ("options", "index", "wait"),
    [
        ({}, None, None),
        ({}, "42", "60s"),
        ({"dc": "dc1", "consistency": "stale", "token": "secret"}, "7", "5s"),
        ({"consistency": "consistent"}, None, "5s"),
    ],
)
async def test_the_request_is_py_consuls_catalog_node(
    options: dict[str, str], index: str | None, wait: str | None
) -> None:
    client = consul.aio.Consul(host="127.0.0.1", port=1, **options)
    try:
        recorder = _Recorder()
        client.http, real = recorder, client.http
        client.catalog.node("isthmus-west", index=index, wait=wait)
        node_read.request(client, "isthmus-west", index, wait)
        assert recorder.calls[0] == recorder.calls[1]
        assert recorder.calls[0][0] == "/v1/catalog/node/isthmus-west"
    finally:
        await real.close()


def test_an_answer_of_the_wrong_shape_is_a_value_error() -> None:
    assert node_read.decode(b"null") is None
    with pytest.raises(ValueError):
        node_read.decode(b'{"Node": {}, "Services": {"a": {"Port": "80"}}}')
    with pytest.raises(ValueError):
        node_read.decode(b"[1, 2]")


async def test_the_values_are_py_consuls(
    consul_addr: tuple[str, int], names: Callable[[str], str]
) -> None:
    host, port = consul_addr
    node = f"isthmus-{names('nr')}"
    async with consul.aio.Consul(host=host, port=port) as client:
        meta = {"isthmus-cluster": "x", "isthmus-ports": '[{"name":"http","port":80}]'}
        for sid, tags in (("a-ns", [EXPORT_TAG]), ("b-ns", None)):
            service = {"ID": sid, "Service": sid, "Port": 15443, "Meta": meta}
            if tags is not None:
                service["Tags"] = tags
            assert await client.catalog.register(node, "10.9.0.1", service=service)
        want_index, want = await client.catalog.node(node)
        got_index, got = await node_read.request(client, node, None, None)
        assert got is not None and got.Node is not None and got.Services is not None
        assert got_index == want_index
        assert (got.Node.Node, got.Node.Address) == (want["Node"]["Node"], "10.9.0.1")
        assert sorted(got.Services) == sorted(want["Services"]) == ["a-ns", "b-ns"]
        for sid, svc in got.Services.items():
            raw = want["Services"][sid]
            for field in ("ID", "Service", "Address", "Meta", "Port", "ModifyIndex"):
                assert getattr(svc, field) == raw[field], field
            assert (svc.Tags or []) == (raw["Tags"] or [])
            assert svc.as_entry()["Meta"] == raw["Meta"]

        # Through ConsulApi, as the importer reads: a blocking read at the current index
        # answers with the write that moves it; a node that does not exist is None.
        api = ConsulApi(client)
        index, _ = await api.watch_node(node, 0, 5)
        assert index == int(want_index)
        waiting = asyncio.ensure_future(api.watch_node(node, index, 30))
        service = {"ID": "c-ns", "Service": "c-ns", "Tags": [EXPORT_TAG], "Port": 1}
        assert await client.catalog.register(node, "10.9.0.1", service=service)
        after, data = await asyncio.wait_for(waiting, 20)
        assert after > index and data is not None and "c-ns" in (data.Services or {})
        gone_index, gone = await api.watch_node(f"{node}-none", 0, 5)
        assert gone is None and gone_index >= 1
