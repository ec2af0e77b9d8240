"""Configuration for the servers in the benchmark, rendered as text.

All three proxies do the same job: accept HTTP/1.1 and h2c (HTTP/2 with prior
knowledge) on loopback and forward every request to one upstream over pooled
HTTP/1.1 keep-alive connections.

* :func:`upstream_nginx` - the shared origin: one nginx worker answering
  ``200 "hello world\\n"`` on an HTTP/1.1 port and an h2c port (the h2c port is
  only used for the "direct" latency baseline).
* :func:`nginx_proxy` - nginx, 1 worker, ``proxy_pass`` with a keep-alive pool.
  nginx 1.22's ``listen ... http2`` makes a port h2c-only, so it gets two ports.
* :func:`haproxy_proxy` - HAProxy, 1 thread, ``http-reuse always``, an
  HTTP/1.1 bind and a ``proto h2`` bind.
* :func:`isthmus_config` - Gateway API + core Kubernetes YAML for Isthmus; one
  listener port serves both HTTP/1.1 and h2c.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The body every request gets back from the upstream.
BODY = b"hello world\n"

#: Requests per keep-alive connection before a server closes it. The defaults
#: (nginx: 1000) would make connection set-up part of what is measured.
KEEPALIVE_REQUESTS = 1_000_000


def _nginx_main(tmp: Path, name: str) -> str:
    """Top-level nginx directives that keep every file inside ``tmp``."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}"
        "worker_processes 1;\n"
        "worker_rlimit_nofile 16384;\n"
        f"pid {tmp}/{name}.pid;\n"
        f"error_log {tmp}/{name}.error.log warn;\n"
        "events {\n"
        "    worker_connections 8192;\n"
        "}\n"
    )


def _nginx_http_common(tmp: Path, name: str) -> str:
    return (
        "    access_log off;\n"
        "    server_tokens off;\n"
        f"    client_body_temp_path {tmp}/{name}.client_body;\n"
        f"    proxy_temp_path {tmp}/{name}.proxy;\n"
        f"    fastcgi_temp_path {tmp}/{name}.fastcgi;\n"
        f"    uwsgi_temp_path {tmp}/{name}.uwsgi;\n"
        f"    scgi_temp_path {tmp}/{name}.scgi;\n"
        f"    keepalive_requests {KEEPALIVE_REQUESTS};\n"
        "    keepalive_timeout 120s;\n"
    )


def upstream_nginx(tmp: Path, h1_port: int, h2c_port: int) -> str:
    """The origin server: a fixed small body on HTTP/1.1 and h2c."""
    return (
        _nginx_main(tmp, "upstream")
        + "http {\n"
        + _nginx_http_common(tmp, "upstream")
        + "    server {\n"
        f"        listen 127.0.0.1:{h1_port} backlog=4096;\n"
        f"        listen 127.0.0.1:{h2c_port} http2 backlog=4096;\n"
        "        location / {\n"
        "            default_type text/plain;\n"
        '            return 200 "hello world\\n";\n'
        "        }\n"
        "    }\n"
        "}\n"
    )


def nginx_proxy(tmp: Path, h1_port: int, h2c_port: int, upstream_port: int) -> str:
    """nginx as a reverse proxy with an upstream keep-alive pool."""
    return (
        _nginx_main(tmp, "nginx")
        + "http {\n"
        + _nginx_http_common(tmp, "nginx")
        + "    upstream backend {\n"
        f"        server 127.0.0.1:{upstream_port};\n"
        "        keepalive 64;\n"
        f"        keepalive_requests {KEEPALIVE_REQUESTS};\n"
        "    }\n"
        "    server {\n"
        f"        listen 127.0.0.1:{h1_port} backlog=4096;\n"
        f"        listen 127.0.0.1:{h2c_port} http2 backlog=4096;\n"
        "        location / {\n"
        "            proxy_pass http://backend;\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n'
        "        }\n"
        "    }\n"
        "}\n"
    )


def haproxy_proxy(h1_port: int, h2c_port: int, upstream_port: int) -> str:
    """HAProxy in HTTP mode, one thread, reusing upstream connections."""
    return (
        "global\n"
        "    nbthread 1\n"
        "    maxconn 4096\n"
        "\n"
        "defaults\n"
        "    mode http\n"
        "    timeout connect 5s\n"
        "    timeout client 120s\n"
        "    timeout server 120s\n"
        "    timeout http-keep-alive 120s\n"
        "    http-reuse always\n"
        "\n"
        "frontend fe\n"
        f"    bind 127.0.0.1:{h1_port}\n"
        f"    bind 127.0.0.1:{h2c_port} proto h2\n"
        "    default_backend upstream\n"
        "\n"
        "backend upstream\n"
        "    http-reuse always\n"
        f"    server up 127.0.0.1:{upstream_port}\n"
    )


def isthmus_config(proxy_port: int, upstream_port: int) -> dict[str, str]:
    """Gateway API YAML for Isthmus: file name -> contents.

    A ``Gateway`` with one HTTP listener, an ``HTTPRoute`` sending ``/`` to the
    ``upstream`` Service, the Service itself and its static EndpointSlice.
    """
    gateway = f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: bench
  namespace: default
spec:
  gatewayClassName: isthmus
  addresses:
    - type: IPAddress
      value: 127.0.0.1
  listeners:
    - name: http
      protocol: HTTP
      port: {proxy_port}
"""
    route = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: bench
  namespace: default
spec:
  parentRefs:
    - name: bench
  rules:
    - matches:
        - path:
            type: PathPrefix
            value: /
      backendRefs:
        - name: upstream
          port: 80
"""
    service = """\
apiVersion: v1
kind: Service
metadata:
  name: upstream
  namespace: default
spec:
  ports:
    - name: http
      port: 80
      protocol: TCP
"""
    endpoints = f"""\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: upstream-bench
  namespace: default
  labels:
    kubernetes.io/service-name: upstream
addressType: IPv4
endpoints:
  - addresses:
      - 127.0.0.1
    conditions:
      ready: true
ports:
  - name: http
    port: {upstream_port}
    protocol: TCP
"""
    return {
        "gateway.yaml": gateway,
        "httproute.yaml": route,
        "service.yaml": service,
        "endpointslice.yaml": endpoints,
    }
