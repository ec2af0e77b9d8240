"""The importer's blocking node read, ``GET /v1/catalog/node/<node>``, decoded straight into
the few fields it uses.

Called by ``api.ConsulApi.watch_node``. The request is the one py-consul's
``catalog.node(node, index=, wait=)`` sends, made through the same client
(``Consul.http.get``: its session, address, token header, ``dc`` and consistency), with
py-consul's status handling (``consul.callback.CB``). Only the decoding differs: a remote
cluster's node holds every service it exports (about 1.8 MB of JSON at 3,300 services),
which ``json.loads`` turns into dicts in 20 ms, and msgspec into the structs below in 6 ms,
skipping what the importer never reads (``Weights``, ``Proxy``, ``Connect``, ...). The field
types are Consul's Go types (``Meta`` is ``map[string]string``, ``Port`` an ``int``, ...),
which Consul's encoder always produces, so a valid answer always decodes; anything else is
an answer that makes no sense and fails the read like any other (the importer keeps what
it has).
"""

from __future__ import annotations

from typing import Any

import msgspec
from consul.callback import CB


class NodeInfo(msgspec.Struct, frozen=True, gc=False):
    Node: str = ""
    Address: str = ""


class NodeService(msgspec.Struct, frozen=True, gc=False):
    """The fields of a Consul ``NodeService`` the importer reads."""

    ID: str = ""
    Service: str = ""
    Tags: list[str] | None = None
    Address: str = ""
    Meta: dict[str, str] | None = None
    Port: int = 0
    CreateIndex: int = 0
    ModifyIndex: int = 0

    def as_entry(self) -> dict[str, Any]:
        """The service as the JSON object fields ``records.imported_from_entry`` reads."""
        return {
            "ID": self.ID,
            "Service": self.Service,
            "Tags": self.Tags,
            "Address": self.Address,
            "Meta": self.Meta,
            "Port": self.Port,
        }


class NodeServices(msgspec.Struct, frozen=True, gc=False):
    """``/v1/catalog/node/<node>``'s answer: the node and its services by ID."""

    Node: NodeInfo | None = None
    Services: dict[str, NodeService] | None = None


_DECODER = msgspec.json.Decoder(NodeServices | None)


def decode(body: str | bytes) -> NodeServices | None:
    """The answer's body; ``null`` (no such node) is None. Raises ValueError."""
    try:
        data: NodeServices | None = _DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"node answer: {exc}") from None
    return data


def _callback(response: Any) -> tuple[str, NodeServices | None]:
    CB._status(response, allow_404=True)
    data = None if response.code == 404 else decode(response.body)
    index = response.headers.get("X-Consul-Index")
    if index is None:
        raise ValueError(f"Missing index header: {response.headers}")
    return index, data


def request(client: Any, node: str, index: str | None, wait: str | None) -> Any:
    """The awaitable read, built as py-consul's ``catalog.node`` builds it: ``(index as a
    string, NodeServices or None)``."""
    params: list[tuple[str, str]] = []
    if client.dc:
        params.append(("dc", client.dc))
    if index:
        params.append(("index", index))
        if wait:
            params.append(("wait", wait))
    if client.consistency in ("consistent", "stale"):
        params.append((client.consistency, "1"))
    headers = client.prepare_headers(None)
    return client.http.get(_callback, f"/v1/catalog/node/{node}", params=params, headers=headers)
