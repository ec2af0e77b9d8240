"""The catalog's records, as Consul's state store holds them.

msgspec Structs: typed, cheap to copy and compare, and encoded straight into the data file by
``persist``. ``same`` compares two records while ignoring their Raft indexes, which is how
Consul decides that a re-registration changes nothing (and so must not move any index).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec


class Weights(msgspec.Struct, kw_only=True):
    passing: int = 1
    warning: int = 1


class ServiceAddress(msgspec.Struct, kw_only=True):
    address: str = ""
    port: int = 0


class Node(msgspec.Struct, kw_only=True):
    id: str = ""
    node: str
    address: str = ""
    datacenter: str = ""
    tagged_addresses: dict[str, str] | None = None
    meta: dict[str, str] | None = None
    create_index: int = 0
    modify_index: int = 0


class Service(msgspec.Struct, kw_only=True):
    node: str
    kind: str = ""
    id: str
    service: str
    tags: list[str] | None = None
    address: str = ""
    tagged_addresses: dict[str, ServiceAddress] | None = None
    meta: dict[str, str] | None = None
    port: int = 0
    socket_path: str = ""
    weights: Weights | None = None
    enable_tag_override: bool = False
    create_index: int = 0
    modify_index: int = 0


class Check(msgspec.Struct, kw_only=True):
    node: str
    check_id: str
    name: str = ""
    status: str = "critical"
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: list[str] | None = None
    type: str = ""
    interval: str = ""
    timeout: str = ""
    create_index: int = 0
    modify_index: int = 0


class KVEntry(msgspec.Struct, kw_only=True):
    key: str
    value: bytes | None = None
    flags: int = 0
    lock_index: int = 0
    session: str = ""
    create_index: int = 0
    modify_index: int = 0


class ServiceCheck(msgspec.Struct, kw_only=True):
    id: str
    namespace: str = ""


class Session(msgspec.Struct, kw_only=True):
    id: str
    name: str = ""
    node: str
    lock_delay_ns: int = 15_000_000_000
    behavior: str = "release"
    ttl: str = ""
    node_checks: list[str] | None = None
    service_checks: list[ServiceCheck] | None = None
    create_index: int = 0
    modify_index: int = 0


R = TypeVar("R", Node, Service, Check, KVEntry, Session)


def same(a: R, b: R) -> bool:
    """Equal apart from CreateIndex/ModifyIndex."""
    return msgspec.structs.replace(a, create_index=0, modify_index=0) == msgspec.structs.replace(
        b, create_index=0, modify_index=0
    )
