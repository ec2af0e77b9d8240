"""Fixtures for the config loader and compiler tests: YAML directories and TLS material."""

from __future__ import annotations

import base64
import datetime
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Writer = Callable[[str, str], Path]


@pytest.fixture
def write(tmp_path: Path) -> Writer:
    """``write("a/b.yaml", text)`` puts dedented ``text`` under ``tmp_path``."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return _write


def make_pair(hostname: str = "www.example.com") -> tuple[str, str]:
    """A self-signed certificate for ``hostname`` and its key, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert_pem, key_pem


@pytest.fixture(scope="session")
def pair() -> tuple[str, str]:
    return make_pair()


@pytest.fixture(scope="session")
def other_pair() -> tuple[str, str]:
    return make_pair("other.example.com")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def tls_secret(name: str, namespace: str, cert_pem: str, key_pem: str) -> str:
    """A ``kubernetes.io/tls`` Secret document."""
    return textwrap.dedent(
        f"""\
        apiVersion: v1
        kind: Secret
        metadata: {{name: {name}, namespace: {namespace}}}
        type: kubernetes.io/tls
        data:
          tls.crt: {b64(cert_pem)}
          tls.key: {b64(key_pem)}
        """
    )


SERVICES = """
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations:
    isthmus.dev/lb-policy: LEAST_REQUEST
spec:
  selector: {app: web}
  ports:
    - {name: http, port: 80, targetPort: 8080, protocol: TCP}
    - {name: grpc, port: 9090, targetPort: grpc, appProtocol: kubernetes.io/h2c}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
  - {name: http, port: 8080, protocol: TCP}
  - {name: grpc, port: 9091}
endpoints:
  - addresses: [10.0.0.1]
    conditions: {ready: true}
    zone: zone-a
  - addresses: [10.0.0.2]
    conditions: {ready: false, serving: true, terminating: true}
    hostname: web-2
  - addresses: [10.0.0.3]
"""

GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: isthmus}
spec: {controllerName: isthmus.dev/gateway}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: shop}
spec:
  gatewayClassName: isthmus
  listeners:
    - name: http
      port: 8080
      protocol: HTTP
    - name: https
      port: 8443
      protocol: HTTPS
      hostname: www.example.com
      tls:
        mode: Terminate
        certificateRefs: [{name: www-cert}]
    - name: passthrough
      port: 9443
      protocol: TLS
      hostname: "*.example.com"
      tls: {mode: Passthrough}
"""

ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web
  namespace: shop
  creationTimestamp: 2024-05-01T10:00:00Z
spec:
  parentRefs: [{name: edge}]
  hostnames: [www.example.com]
  rules:
    - matches:
        - path: {type: PathPrefix, value: /api}
          headers: [{name: X-Env, value: canary}]
          queryParams: [{name: v, value: "2", type: Exact}]
          method: GET
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{name: X-Via, value: isthmus}]
            remove: [X-Debug]
        - type: URLRewrite
          urlRewrite:
            path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}
      backendRefs:
        - {name: web, port: 80, weight: 3}
        - {name: missing, port: 80}
      timeouts: {request: 10s, backendRequest: 500ms}
    - matches: [{path: {type: Exact, value: /old}}]
      filters:
        - type: RequestRedirect
          requestRedirect: {scheme: https, statusCode: 301}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: db, namespace: shop}
spec:
  parentRefs: [{name: edge, sectionName: passthrough}]
  hostnames: [db.example.com]
  rules:
    - backendRefs: [{name: web, port: 80}]
---
apiVersion: isthmus.dev/v1alpha1
kind: ProxySettings
metadata: {name: limits, namespace: isthmus-system}
spec:
  maxHeaderBytes: 32768
  headerTimeoutSeconds: 5
  h2MaxConcurrentStreams: 50
"""


@pytest.fixture
def full_example(write: Writer, pair: tuple[str, str]) -> Path:
    """A directory with one of everything, valid."""
    write("services.yaml", SERVICES)
    write("gateway/gateway.yaml", GATEWAY)
    write("gateway/secret.yml", tls_secret("www-cert", "shop", *pair))
    return write("routes/routes.yaml", ROUTES).parent.parent


@pytest.fixture
def secret_doc() -> Callable[[str, str, str, str], str]:
    """``secret_doc(name, namespace, cert_pem, key_pem)``: a TLS Secret document."""
    return tls_secret
