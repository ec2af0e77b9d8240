"""gateway.config.loader: files, documents, YAML errors, duplicates and problem reporting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config.errors import ConfigError, Problem
from gateway.config.kinds import Gateway, HTTPRoute, ProxySettings, Secret, Service
from gateway.config.loader import load_directory
from gateway.config.resources import ObjectKey

Writer = Callable[[str, str], Path]

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: %s, namespace: %s}
spec:
  ports: [{port: 80}]
"""


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_directory(path)
    return list(info.value.problems)


def test_full_example_loads_every_kind(full_example: Path) -> None:
    resources = load_directory(full_example)
    kinds = sorted({o.kind_name for o in resources.objects})
    assert kinds == [
        "EndpointSlice",
        "Gateway",
        "GatewayClass",
        "HTTPRoute",
        "ProxySettings",
        "Secret",
        "Service",
        "TLSRoute",
    ]
    (service,) = resources.of_kind(Service)
    assert service.lb_policy == "LEAST_REQUEST"
    assert [p.target_port for p in service.spec.ports] == [8080, "grpc"]
    (route,) = resources.of_kind(HTTPRoute)
    # YAML reads an unquoted timestamp as a datetime; the loader keeps RFC 3339 text.
    assert route.metadata.creation_timestamp == "2024-05-01T10:00:00Z"
    assert resources.of_kind(Secret)[0].namespace == "shop"
    origin = resources.origins[ObjectKey("Gateway", "shop", "edge")]
    assert origin.file.endswith("gateway/gateway.yaml")
    assert origin.line == 6  # the second document starts after the GatewayClass


def test_objects_are_sorted_whatever_the_file_order(write: Writer) -> None:
    write("z.yaml", SERVICE % ("alpha", "default"))
    write("a.yaml", SERVICE % ("beta", "default"))
    write("m/n.yml", SERVICE % ("gamma", "aaa"))
    names = [(o.namespace, o.name) for o in load_directory(write("x.txt", "").parent).objects]
    assert names == [("aaa", "gamma"), ("default", "alpha"), ("default", "beta")]


def test_default_namespace_multi_document_and_list(write: Writer) -> None:
    path = write(
        "all.yaml",
        """
        ---
        apiVersion: v1
        kind: List
        items:
          - apiVersion: v1
            kind: Service
            metadata: {name: one}
            spec: {ports: [{port: 80}]}
          - apiVersion: v1
            kind: Service
            metadata: {name: two, namespace: other}
        ---
        # an empty document is fine
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: three}
        """,
    )
    services = load_directory(path).of_kind(Service)
    assert [(s.namespace, s.name) for s in services] == [
        ("default", "one"),
        ("default", "three"),
        ("other", "two"),
    ]


def test_hidden_directories_and_other_files_are_skipped(write: Writer) -> None:
    write("..2024_01_01/svc.yaml", SERVICE % ("hidden", "default"))
    write(".git/x.yaml", "not: [valid")
    write("README.md", "# not yaml")
    root = write("svc.yaml", SERVICE % ("seen", "default")).parent
    assert [o.name for o in load_directory(root).objects] == ["seen"]


def test_a_single_file_can_be_loaded(write: Writer) -> None:
    path = write("svc.yaml", SERVICE % ("one", "default"))
    assert [o.name for o in load_directory(path).objects] == ["one"]


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path / "nope")
    assert "no such file or directory" in str(problem)


def test_invalid_yaml_names_file_and_line(write: Writer) -> None:
    path = write(
        "broken.yaml",
        """
        apiVersion: v1
        kind: Service
        metadata:
          name: web
          labels: {a: b
        spec: {}
        """,
    )
    (problem,) = problems_of(path.parent)
    assert problem.file == str(path)
    assert problem.line is not None and problem.line >= 5
    assert problem.message.startswith("invalid YAML")
    assert str(problem).startswith(f"{path}:{problem.line}: invalid YAML")


def test_problems_from_all_files_are_collected(write: Writer) -> None:
    write("a.yaml", "key: [unclosed")
    write(
        "b.yaml",
        """
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          ports:
            - port: 80
              tpye: x
        """,
    )
    root = write("c.yaml", "apiVersion: v9\nkind: Frobnicator\nmetadata: {name: f}\n").parent
    with pytest.raises(ConfigError) as info:
        load_directory(root)
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{root / 'a.yaml'}:") and "invalid YAML" in lines[0]
    assert lines[1] == (
        f"{root / 'b.yaml'}:7: Service default/web: spec.ports[0].tpye: unknown field"
    )
    assert 'unknown kind "Frobnicator" (apiVersion v9)' in lines[2]


def test_wrong_api_version_for_a_known_kind(write: Writer) -> None:
    path = write(
        "r.yaml",
        """
        apiVersion: gateway.networking.k8s.io/v1alpha1
        kind: HTTPRoute
        metadata: {name: r}
        """,
    )
    (problem,) = problems_of(path)
    assert problem.obj == "HTTPRoute default/r"
    assert problem.path == "apiVersion"
    assert "gateway.networking.k8s.io/v1" in problem.message


def test_duplicate_objects_are_an_error(write: Writer) -> None:
    write("a.yaml", SERVICE % ("web", "default"))
    write("b.yaml", SERVICE % ("other", "default") + "---\n" + SERVICE % ("web", "x"))
    root = write("c.yaml", SERVICE % ("web", "default")).parent
    (problem,) = problems_of(root)
    assert problem.file == str(root / "c.yaml")
    assert problem.obj == "Service default/web"
    assert problem.message == f"duplicate object; first defined at {root / 'a.yaml'}:1"


def test_same_name_in_another_kind_is_not_a_duplicate(write: Writer) -> None:
    write("svc.yaml", SERVICE % ("web", "default"))
    root = write(
        "route.yaml",
        """
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {name: web}
        """,
    ).parent
    assert len(load_directory(root).objects) == 2


def test_duplicate_yaml_keys_are_reported(write: Writer) -> None:
    path = write(
        "dup.yaml",
        """
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          type: ClusterIP
          type: NodePort
        """,
    )
    (problem,) = problems_of(path)
    assert (problem.path, problem.line, problem.message) == ("spec.type", 6, 'duplicate key "type"')


def test_document_that_is_not_a_mapping(write: Writer) -> None:
    path = write("list.yaml", "- a\n- b\n")
    (problem,) = problems_of(path)
    assert "document 1: expected a Kubernetes object" in problem.message


def test_missing_kind(write: Writer) -> None:
    (problem,) = problems_of(write("x.yaml", "apiVersion: v1\nmetadata: {name: a}\n"))
    assert (problem.path, problem.message) == ("kind", "required field is missing")


def test_only_one_proxy_settings(write: Writer) -> None:
    doc = "apiVersion: isthmus.dev/v1alpha1\nkind: ProxySettings\nmetadata: {name: %s}\n"
    write("a.yaml", doc % "a")
    (problem,) = problems_of(write("b.yaml", doc % "b").parent)
    assert problem.obj == "ProxySettings default/b"
    assert "only one ProxySettings is allowed" in problem.message


def test_problem_line_points_at_the_field(write: Writer) -> None:
    path = write(
        "gw.yaml",
        """
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {name: gw}
        spec:
          gatewayClassName: isthmus
          listeners:
            - name: web
              port: 80
              protocol: HTTP
            - name: api
              port: 70000
              protocol: HTTP
        """,
    )
    (problem,) = problems_of(path)
    assert (problem.line, problem.path) == (11, "spec.listeners[1].port")
    assert problem.message == "must be at most 65535, got 70000"


def test_list_items_report_their_own_lines(write: Writer) -> None:
    path = write(
        "list.yaml",
        """
        apiVersion: v1
        kind: List
        items:
          - apiVersion: v1
            kind: Service
            metadata: {name: ok}
          - apiVersion: v1
            kind: Service
            metadata: {name: bad}
            spec: {ports: [{port: 80, colour: red}]}
        """,
    )
    (problem,) = problems_of(path)
    assert (problem.obj, problem.path, problem.line) == (
        "Service default/bad",
        "spec.ports[0].colour",
        10,
    )


def test_loaded_types_are_typed_models(full_example: Path) -> None:
    resources = load_directory(full_example)
    (gateway,) = resources.of_kind(Gateway)
    assert gateway.bind_addresses == ("0.0.0.0",)
    assert [listener.name for listener in gateway.spec.listeners] == [
        "http",
        "https",
        "passthrough",
    ]
    (settings,) = resources.of_kind(ProxySettings)
    assert settings.limits().max_header_bytes == 32768
