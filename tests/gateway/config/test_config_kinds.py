"""Validation of each kind: unknown and unsupported fields, types, enums, cross-field rules."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import pytest
from config_support import Writer, one_problem, problems

from gateway.config.kinds import ProxySettings
from gateway.config.kinds.proxysettings import ProxySettingsSpec, limits_field
from gateway.config.loader import load_directory
from gateway.config.snapshot import Limits

# One document per kind, each with a misspelt field deep inside it.
UNKNOWN_FIELD_CASES = [
    (
        """
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: shop}
        spec:
          ports: [{port: 80, targetPrt: 8080}]
        """,
        "Service shop/web",
        "spec.ports[0].targetPrt",
    ),
    (
        """
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}
        addressType: IPv4
        endpoints:
          - addresses: [10.0.0.1]
            conditions: {redy: true}
        """,
        "EndpointSlice default/web-1",
        "endpoints[0].conditions.redy",
    ),
    (
        """
        apiVersion: v1
        kind: Secret
        metadata: {name: cert}
        type: kubernetes.io/tls
        stringDta: {}
        """,
        "Secret default/cert",
        "stringDta",
    ),
    (
        """
        apiVersion: gateway.networking.k8s.io/v1
        kind: GatewayClass
        metadata: {name: isthmus}
        spec: {controllerName: isthmus.dev/gateway, descripton: x}
        """,
        "GatewayClass isthmus",
        "spec.descripton",
    ),
    (
        """
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {name: gw, namespace: edge}
        spec:
          gatewayClassName: isthmus
          listeners:
            - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {frm: All}}}
        """,
        "Gateway edge/gw",
        "spec.listeners[0].allowedRoutes.namespaces.frm",
    ),
    (
        """
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {name: web}
        spec:
          rules:
            - matches: [{path: {tpye: Exact, value: /}}]
        """,
        "HTTPRoute default/web",
        "spec.rules[0].matches[0].path.tpye",
    ),
    (
        """
        apiVersion: gateway.networking.k8s.io/v1
        kind: GRPCRoute
        metadata: {name: rpc}
        spec:
          rules:
            - matches: [{method: {service: pkg.Svc, methd: Get}}]
        """,
        "GRPCRoute default/rpc",
        "spec.rules[0].matches[0].method.methd",
    ),
    (
        """
        apiVersion: gateway.networking.k8s.io/v1alpha3
        kind: TLSRoute
        metadata: {name: db}
        spec:
          hostnames: [db.example.com]
          rules: [{backendRefs: [{name: db, port: 5432, wieght: 1}]}]
        """,
        "TLSRoute default/db",
        "spec.rules[0].backendRefs[0].wieght",
    ),
    (
        """
        apiVersion: gateway.networking.k8s.io/v1beta1
        kind: ReferenceGrant
        metadata: {name: allow, namespace: backends}
        spec:
          from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: web}]
          to: [{group: "", kind: Service, nme: api}]
        """,
        "ReferenceGrant backends/allow",
        "spec.to[0].nme",
    ),
    (
        """
        apiVersion: isthmus.dev/v1alpha1
        kind: ProxySettings
        metadata: {name: limits}
        spec: {maxHeaderByte: 1024}
        """,
        "ProxySettings default/limits",
        "spec.maxHeaderByte",
    ),
]


@pytest.mark.parametrize(("text", "obj", "path"), UNKNOWN_FIELD_CASES)
def test_unknown_field_names_file_object_and_field(
    write: Writer, text: str, obj: str, path: str
) -> None:
    problem = one_problem(write, text)
    assert problem.file.endswith("obj.yaml")
    assert (problem.obj, problem.path) == (obj, path)
    assert problem.message.startswith("unknown field")
    assert f"obj.yaml:{problem.line}: {obj}: {path}: unknown field" in str(problem)


def test_unknown_field_suggests_the_close_name(write: Writer) -> None:
    problem = one_problem(write, UNKNOWN_FIELD_CASES[5][0])
    assert problem.message == "unknown field (did you mean 'type'?)"


GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: isthmus
  listeners:
    - %s
"""


@pytest.mark.parametrize(
    ("listener", "path", "message"),
    [
        (
            "{name: a, port: 80, protocol: TCP}",
            "spec.listeners[0].protocol",
            '"TCP" is not supported by isthmus',
        ),
        (
            "{name: a, port: 443, protocol: HTTPS}",
            "spec.listeners[0].tls",
            "required on an HTTPS listener",
        ),
        (
            "{name: a, port: 443, protocol: HTTPS, tls: {}}",
            "spec.listeners[0].tls.certificateRefs",
            "at least one is required",
        ),
        (
            "{name: a, port: 443, protocol: HTTPS, tls: {mode: Passthrough}}",
            "spec.listeners[0].tls.mode",
            "HTTPS listeners terminate TLS; for Passthrough use protocol TLS",
        ),
        (
            "{name: a, port: 443, protocol: TLS, tls: {certificateRefs: [{name: c}]}}",
            "spec.listeners[0].tls.mode",
            "Terminate on a TLS listener is not supported by isthmus; use protocol HTTPS, or "
            "mode Passthrough",
        ),
        (
            "{name: a, port: 80, protocol: HTTP, tls: {}}",
            "spec.listeners[0].tls",
            "must not be set on an HTTP listener",
        ),
        (
            "{name: a, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector}}}",
            "spec.listeners[0].allowedRoutes.namespaces.from",
            '"Selector" is not supported by isthmus',
        ),
        (
            "{name: a, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: TLSRoute}]}}",
            "spec.listeners[0].allowedRoutes.kinds[0]",
            "gateway.networking.k8s.io/TLSRoute routes cannot attach to a HTTP listener (use "
            "HTTPRoute, GRPCRoute)",
        ),
        (
            "{name: a, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: c, "
            "kind: ConfigMap}]}}",
            "spec.listeners[0].tls.certificateRefs[0]",
            "core/ConfigMap is not supported by isthmus; reference a Secret",
        ),
        (
            "{name: a, port: 80, protocol: HTTP, hostname: '*.example.com', extra: 1}",
            "spec.listeners[0].extra",
            "unknown field",
        ),
    ],
)
def test_gateway_listeners(write: Writer, listener: str, path: str, message: str) -> None:
    problem = one_problem(write, GATEWAY % listener)
    assert (problem.obj, problem.path, problem.message) == ("Gateway default/gw", path, message)


def test_gateway_addresses_and_listener_names(write: Writer) -> None:
    found = problems(
        write,
        """
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {name: gw}
        spec:
          gatewayClassName: isthmus
          addresses: [{value: not-an-ip}, {type: Hostname, value: gw.example.com}]
          listeners:
            - {name: a, port: 80, protocol: HTTP}
            - {name: a, port: 81, protocol: HTTP}
        """,
    )
    assert [(p.path, p.message) for p in found] == [
        ("spec.addresses[1].type", '"Hostname" is not supported by isthmus'),
    ]
    found = problems(
        write,
        """
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {name: gw}
        spec:
          gatewayClassName: isthmus
          addresses: [{value: not-an-ip}]
          listeners:
            - {name: a, port: 80, protocol: HTTP}
            - {name: a, port: 81, protocol: HTTP}
        """,
    )
    assert [(p.path, p.message) for p in found] == [
        ("spec.addresses[0].value", '"not-an-ip" is not an IP address'),
        ("spec.listeners[1].name", 'duplicate listener name "a"'),
    ]


def test_service_rules(write: Writer) -> None:
    found = problems(
        write,
        """
        apiVersion: v1
        kind: Service
        metadata:
          name: web
          annotations: {isthmus.dev/lb-policy: MAGLEV}
        spec:
          type: ExternalName
          ports:
            - {port: 80, protocol: UDP}
            - {name: b, port: 80}
        status: {loadBalancer: {}}
        """,
    )
    assert [(p.path, p.message) for p in found] == [
        ("spec.type", '"ExternalName" is not supported by isthmus'),
        ("spec.ports[0].protocol", '"UDP" is not supported by isthmus'),
    ]
    found = problems(
        write,
        """
        apiVersion: v1
        kind: Service
        metadata:
          name: web
          annotations: {isthmus.dev/lb-policy: MAGLEV}
        spec:
          ports:
            - {port: 80}
            - {name: b, port: 80}
        """,
    )
    assert [(p.path, p.message) for p in found] == [
        (
            'metadata.annotations["isthmus.dev/lb-policy"]',
            '"MAGLEV" is not a load-balancing policy; '
            "use one of ROUND_ROBIN, LEAST_REQUEST, RANDOM",
        ),
        ("spec.ports[0].name", "required when a Service has several ports"),
        ("spec.ports[1].port", "duplicate port 80"),
    ]


def test_endpointslice_rules(write: Writer) -> None:
    found = problems(
        write,
        """
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: web-1}
        addressType: IPv6
        endpoints: [{addresses: [10.0.0.1, "fd00::1", nonsense]}]
        """,
    )
    assert [(p.path, p.message) for p in found] == [
        (
            'metadata.labels["kubernetes.io/service-name"]',
            "required: the name of the Service these endpoints belong to",
        ),
        ("endpoints[0].addresses[0]", '"10.0.0.1" is not an IPv6 address (addressType is IPv6)'),
        ("endpoints[0].addresses[2]", '"nonsense" is not an IP address'),
    ]


def secret(data: str) -> str:
    return (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: cert, namespace: tls}\n"
        "type: kubernetes.io/tls\n" + data
    )


def test_secret_with_string_data_is_accepted(write: Writer, pair: tuple[str, str]) -> None:
    cert_pem, key_pem = pair
    text = secret(
        "stringData:\n  tls.crt: |\n"
        + textwrap.indent(cert_pem, "    ")
        + "  tls.key: |\n"
        + textwrap.indent(key_pem, "    ")
    )
    path = write("secret.yaml", text)
    assert [o.name for o in load_directory(path).objects] == ["cert"]


def test_bad_secrets(
    write: Writer,
    pair: tuple[str, str],
    other_pair: tuple[str, str],
    secret_doc: Callable[[str, str, str, str], str],
) -> None:
    mismatched = one_problem(write, secret_doc("cert", "tls", pair[0], other_pair[1]))
    assert str(mismatched).endswith(
        'Secret tls/cert: data["tls.key"]: the private key does not match the certificate'
    )
    garbage = one_problem(write, secret_doc("cert", "tls", "not a certificate", pair[1]))
    assert garbage.obj == "Secret tls/cert"
    assert garbage.path == 'data["tls.crt"]'
    assert garbage.message.startswith("is not a valid PEM certificate")
    bad_key = one_problem(write, secret_doc("cert", "tls", pair[0], "-----BEGIN nonsense"))
    assert bad_key.path == 'data["tls.key"]'
    assert bad_key.message.startswith("is not a valid PEM private key")
    bad_base64 = problems(write, secret("data: {tls.crt: '%%%', tls.key: '???'}\n"))
    assert [(p.path, p.message) for p in bad_base64] == [
        ('data["tls.crt"]', "is not valid base64"),
        ('data["tls.key"]', "is not valid base64"),
    ]
    found = problems(write, secret("data: {}\n"))
    assert [(p.path, p.message) for p in found] == [
        ('data["tls.crt"]', "required in a kubernetes.io/tls Secret"),
        ('data["tls.key"]', "required in a kubernetes.io/tls Secret"),
    ]
    opaque = one_problem(write, "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n")
    assert opaque.message == '"Opaque" is not supported by isthmus; use kubernetes.io/tls'


def test_proxysettings_fields_map_onto_limits(write: Writer) -> None:
    spec_fields = {limits_field(f) for f in ProxySettingsSpec.__struct_fields__}
    assert spec_fields - {"node", "telemetry"} == set(Limits.__struct_fields__)
    path = write(
        "settings.yaml",
        """
        apiVersion: isthmus.dev/v1alpha1
        kind: ProxySettings
        metadata: {name: limits}
        spec:
          headerTimeoutSeconds: 2.5
          h2MaxFrameBytes: 32768
          upstreamMaxIdlePerEndpoint: 0
        """,
    )
    (settings,) = load_directory(path).of_kind(ProxySettings)
    limits = settings.limits()
    assert (limits.header_timeout_s, limits.h2_max_frame_bytes) == (2.5, 32768)
    assert limits.upstream_max_idle_per_endpoint == 0
    assert limits.max_header_bytes == Limits().max_header_bytes


def test_proxysettings_node_and_telemetry(write: Writer) -> None:
    path = write(
        "settings.yaml",
        """
        apiVersion: isthmus.dev/v1alpha1
        kind: ProxySettings
        metadata: {name: node}
        spec:
          node: {cluster: east, workload: gw, locality: us-east/us-east-1a, labels: {tier: edge}}
          telemetry:
            tracing: {randomSamplingPercentage: 50, otlp: {endpoint: "http://127.0.0.1:4318/v1/traces"}}
            accessLog: {path: "-", samplingPercentage: 10}
        """,
    )
    (settings,) = load_directory(path).of_kind(ProxySettings)
    node = settings.node()
    assert (node.cluster, node.workload, node.region, node.zone, node.subzone) == (
        "east", "gw", "us-east", "us-east-1a", None)  # fmt: skip
    assert node.labels == (("tier", "edge"),)
    telemetry = settings.telemetry()
    assert telemetry.tracing is not None and telemetry.tracing.sampling_percent == 50
    assert telemetry.tracing.otlp_endpoint == "http://127.0.0.1:4318/v1/traces"
    assert telemetry.access_log is not None and telemetry.access_log.sampling_percent == 10


def test_proxysettings_bad_tracing_endpoint_is_named(write: Writer) -> None:
    problem = one_problem(
        write,
        """
        apiVersion: isthmus.dev/v1alpha1
        kind: ProxySettings
        metadata: {name: node}
        spec:
          telemetry: {tracing: {zipkin: {endpoint: "not a url"}}}
        """,
    )
    assert problem.path == "spec.telemetry.tracing.zipkin.endpoint"


def test_proxysettings_bounds(write: Writer) -> None:
    found = problems(
        write,
        """
        apiVersion: isthmus.dev/v1alpha1
        kind: ProxySettings
        metadata: {name: limits}
        spec: {h2MaxFrameBytes: 1000, h2PrematureResetRatio: 2, idleTimeoutSeconds: 0}
        """,
    )
    assert [(p.path, p.message) for p in found] == [
        ("spec.h2MaxFrameBytes", "must be at least 16384, got 1000"),
        ("spec.h2PrematureResetRatio", "must be at most 1, got 2"),
        ("spec.idleTimeoutSeconds", "must be greater than 0, got 0"),
    ]


def test_metadata_rules(write: Writer) -> None:
    found = problems(
        write,
        """
        apiVersion: v1
        kind: Service
        metadata: {name: Web_1, generateName: web-, namespace: "x.y"}
        """,
    )
    assert [(p.obj, p.path, p.message) for p in found] == [
        ("Service x.y/Web_1", "metadata.name", '"Web_1" is not a DNS subdomain name (lower case)'),
        (
            "Service x.y/Web_1",
            "metadata.generateName",
            "not supported by isthmus: set metadata.name",
        ),
        ("Service x.y/Web_1", "metadata.namespace", '"x.y" is not a DNS label (lower case)'),
    ]
