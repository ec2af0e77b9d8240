"""GRPCRoute compilation: method matches become :path matches on an h2c cluster."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config.compile import load_snapshot
from gateway.config.kinds.grpcroute import GRPCMethodMatchSpec
from gateway.config.snapshot import (
    HeaderMatch,
    HeaderModifier,
    PathMatch,
    RequestHeaderModifierFilter,
    RouteMatch,
    WeightedBackend,
)
from gateway.config.translate import grpc_path_match

Writer = Callable[[str, str], Path]

CONFIG = """
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: rpc}
spec:
  ports: [{name: grpc, port: 50051, appProtocol: grpc}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: rpc}
spec:
  gatewayClassName: isthmus
  listeners: [{name: h2c, port: 8080, protocol: HTTP, hostname: grpc.example.com}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: greeter, namespace: rpc}
spec:
  parentRefs: [{name: gw}]
  rules:
    - matches:
        - method: {service: helloworld.Greeter, method: SayHello}
          headers: [{name: X-Tenant, value: acme}]
        - method: {service: helloworld.Admin}
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: {add: [{name: x-route, value: grpc}]}
      backendRefs: [{name: greeter, port: 50051}]
    - backendRefs: [{name: greeter, port: 50051, weight: 2}]
"""


def test_grpcroute_compiles_to_path_matches(write: Writer) -> None:
    snapshot = load_snapshot(write("grpc.yaml", CONFIG).parent)
    (cluster,) = snapshot.clusters
    assert (cluster.name, cluster.protocol) == ("rpc/greeter:50051", "h2c")
    (binding,) = snapshot.ports
    (route,) = binding.listeners[0].http_routes
    assert (route.kind, route.hostnames) == ("GRPCRoute", ("grpc.example.com",))
    first, second = route.rules
    assert first.matches == (
        RouteMatch(
            path=PathMatch(type="Exact", value="/helloworld.Greeter/SayHello"),
            headers=(HeaderMatch(name="x-tenant", value="acme"),),
        ),
        RouteMatch(path=PathMatch(type="PathPrefix", value="/helloworld.Admin/")),
    )
    assert first.filters == (
        RequestHeaderModifierFilter(modifier=HeaderModifier(add=(("x-route", "grpc"),))),
    )
    assert first.backends == (WeightedBackend(cluster="rpc/greeter:50051"),)
    # A rule without matches matches every method.
    assert second.matches == (RouteMatch(path=PathMatch(type="PathPrefix", value="/")),)
    assert second.backends == (WeightedBackend(cluster="rpc/greeter:50051", weight=2),)
    assert snapshot.unresolved == ()


@pytest.mark.parametrize(
    ("match", "matching", "not_matching"),
    [
        (GRPCMethodMatchSpec(method="Get"), ["/pkg.A/Get", "/B/Get"], ["/pkg.A/GetX", "/Get"]),
        (
            GRPCMethodMatchSpec(type="RegularExpression", service=r"pkg\.v[0-9]+\.Users"),
            ["/pkg.v1.Users/List", "/pkg.v22.Users/Get"],
            ["/pkg.vX.Users/List", "/pkg.v1.Users/a/b"],
        ),
        (
            GRPCMethodMatchSpec(type="RegularExpression", service="a|b", method="Get.*"),
            ["/a/Get", "/b/GetAll"],
            ["/c/Get", "/a/List", "/ab/Get"],
        ),
    ],
)
def test_grpc_method_regexes_match_whole_paths(
    match: GRPCMethodMatchSpec, matching: list[str], not_matching: list[str]
) -> None:
    path = grpc_path_match(match)
    assert path.type == "RegularExpression"
    pattern = re.compile(path.value)
    assert all(pattern.fullmatch(p) for p in matching)
    assert not any(pattern.fullmatch(p) for p in not_matching)


def test_grpc_exact_service_and_method() -> None:
    assert grpc_path_match(GRPCMethodMatchSpec(service="a.B", method="C")) == PathMatch(
        type="Exact", value="/a.B/C"
    )
    assert grpc_path_match(None) == PathMatch()
