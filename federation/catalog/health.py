"""``GET /v1/health/service/<name>``: instances with their node and checks.

Called by ``routes_catalog``. The index is the service's (checks included, as Consul's
``maxIndexForService(..., checks=true)``). ``passing`` drops every instance that has any
check, node-level or its own, not ``passing`` (a ``warning`` is dropped too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from federation.catalog import catalog
from federation.catalog.model import Check, Node, Service
from federation.catalog.state import Result, Store


@dataclass(frozen=True, slots=True)
class Instance:
    node: Node
    service: Service
    checks: list[Check]

    @property
    def passing(self) -> bool:
        return all(c.status == "passing" for c in self.checks)


def service_health(
    store: Store,
    name: str,
    *,
    tags: Sequence[str] = (),
    passing: bool = False,
    node_meta: Sequence[tuple[str, str]] = (),
) -> Result[list[Instance]]:
    every = catalog.instances(store, name)
    exists = bool(every)
    out: list[Instance] = []
    for node, svc in every:
        if not catalog.tags_match(svc, tags):
            continue
        if node_meta and not catalog.node_matches(node, node_meta):
            continue
        inst = Instance(node, svc, catalog.checks_for(store, node.node.lower(), svc.id))
        if passing and not inst.passing:
            continue
        out.append(inst)
    return Result.of(
        catalog.service_index(store, name, exists, checks=True),
        catalog.service_topics(store, name, exists),
        out,
    )
