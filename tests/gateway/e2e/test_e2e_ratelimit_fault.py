"""RateLimit and Fault ExtensionRef filters on a real gateway with two worker processes.

A bucket of 20 tokens (no refill within the test) is hit by 80 requests, each on a fresh
connection from several threads, so that the kernel spreads them over both workers: exactly
20 get through in total, because the workers share the bucket, and the rest get 429 with
``Retry-After`` and the ``RateLimit-*`` headers. Allowed responses carry the headers too.
Fault aborts answer their status (curl and httpx), about the configured share of requests,
and gRPC calls get their gRPC status. An ExtensionRef to a missing object answers 500. A
reload that removes the filter removes the behaviour. The delay test needs the request handler
to honour ``RequestContext.delay_s``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest

from tests.gateway.e2e.helpers import (
    ConfigDir,
    backend_service_yaml,
    curl,
    http_route_yaml,
    settings_yaml,
    wait_until,
)
from tests.gateway.e2e.test_e2e_workers import workers_of
from tests.support.backends import GRPC_SERVICE, GrpcBackend, HttpBackend
from tests.support.gateway import GatewayProcess, free_port

BUCKET = 20
REQUESTS = 80


def ratelimit_yaml(name: str, spec: str) -> str:
    return (
        f"apiVersion: isthmus.dev/v1alpha1\nkind: RateLimit\n"
        f"metadata: {{name: {name}, namespace: default}}\nspec: {spec}\n"
    )


def fault_yaml(name: str, spec: str) -> str:
    return (
        f"apiVersion: isthmus.dev/v1alpha1\nkind: Fault\n"
        f"metadata: {{name: {name}, namespace: default}}\nspec: {spec}\n"
    )


def ext(kind: str, name: str) -> str:
    return (
        f"{{type: ExtensionRef, extensionRef: {{group: isthmus.dev, kind: {kind}, name: {name}}}}}"
    )


def rule(prefix: str, *filters: str, backend: str = "rl") -> str:
    return (
        f"  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n"
        f"    filters: [{', '.join(filters)}]\n"
        f"    backendRefs: [{{name: {backend}, port: 80}}]\n"
    )


class Running:
    def __init__(self, gw: GatewayProcess, port: int, cfg: ConfigDir) -> None:
        self.gw, self.port, self.cfg = gw, port, cfg
        self.url = f"http://127.0.0.1:{port}"

    def fresh(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """One request on its own connection."""
        headers = {"connection": "close", **(headers or {})}
        return httpx.get(self.url + path, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[HttpBackend, GrpcBackend]]:
    http, grpc_backend = HttpBackend("rl").start(), GrpcBackend("rl-grpc").start()
    yield http, grpc_backend
    http.stop()
    grpc_backend.stop()


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, backends: tuple[HttpBackend, GrpcBackend]
) -> Iterator[Running]:
    http, grpc_backend = backends
    cfg = ConfigDir(tmp_path_factory.mktemp("ratelimit") / "cfg")
    port = free_port()
    cfg.gateway(port)
    cfg.write("svc.yaml", backend_service_yaml("rl", http.port))
    cfg.write("grpc.yaml", backend_service_yaml("rl-grpc", grpc_backend.port, app_protocol="grpc"))
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=2))
    cfg.write(
        "extensions.yaml",
        "---\n".join(
            [
                ratelimit_yaml("bucket", f"{{maxTokens: {BUCKET}, fillInterval: 1h}}"),
                ratelimit_yaml(
                    "per-user",
                    "{maxTokens: 5, fillInterval: 1h, key: {type: Header, header: x-user}}",
                ),
                fault_yaml("teapot", "{abort: {httpStatus: 418, percentage: {value: 100}}}"),
                fault_yaml("half", "{abort: {httpStatus: 503, percentage: {value: 50}}}"),
                fault_yaml(
                    "exhausted",
                    "{abort: {grpcStatus: RESOURCE_EXHAUSTED, percentage: {value: 100}}}",
                ),
                fault_yaml("slow", "{delay: {fixedDelay: 600ms, percentage: {value: 100}}}"),
            ]
        ),
    )
    rules = (
        rule("/limited", ext("RateLimit", "bucket"))
        + rule("/per-user", ext("RateLimit", "per-user"))
        + rule("/teapot", ext("Fault", "teapot"))
        + rule("/half", ext("Fault", "half"))
        + rule("/slow", ext("Fault", "slow"))
        + rule("/missing", ext("RateLimit", "nowhere"))
    )
    cfg.write("route.yaml", http_route_yaml("web", rules))
    grpc_rules = (
        f"  - matches: [{{method: {{service: {GRPC_SERVICE}, method: Unary}}}}]\n"
        f"    filters: [{ext('Fault', 'exhausted')}]\n"
        "    backendRefs: [{name: rl-grpc, port: 80}]\n"
    )
    cfg.write("grpc-route.yaml", http_route_yaml("grpc", grpc_rules, kind="GRPCRoute"))
    gw = GatewayProcess(cfg.path, workers=2).start()
    yield Running(gw, port, cfg)
    gw.stop()


def test_the_bucket_holds_across_two_workers(running: Running) -> None:
    wait_until(lambda: len(workers_of(running.gw)) == 2, what="2 workers")
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: running.fresh("/limited"), range(REQUESTS)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == BUCKET, statuses
    assert statuses.count(429) == REQUESTS - BUCKET
    denied = next(r for r in responses if r.status_code == 429)
    assert denied.text == "rate limited\n"
    assert int(denied.headers["retry-after"]) >= 1
    assert denied.headers["ratelimit-limit"] == str(BUCKET)
    assert denied.headers["ratelimit-remaining"] == "0"
    assert int(denied.headers["ratelimit-reset"]) >= 1
    # Still empty, whichever worker answers.
    assert all(running.fresh("/limited").status_code == 429 for _ in range(10))


def test_allowed_responses_carry_ratelimit_headers_per_key(running: Running) -> None:
    first = running.fresh("/per-user", headers={"x-user": "ann"})
    second = running.fresh("/per-user", headers={"x-user": "ann"})
    other = running.fresh("/per-user", headers={"x-user": "bob"})
    assert [r.status_code for r in (first, second, other)] == [200, 200, 200]
    assert first.headers["x-backend"] == "rl"
    assert first.headers["ratelimit-limit"] == "5"
    assert [r.headers["ratelimit-remaining"] for r in (first, second, other)] == ["4", "3", "4"]


def test_fault_abort_status_with_curl(running: Running) -> None:
    out = curl("-o", "/dev/null", "-w", "%{http_code}", f"{running.url}/teapot")
    assert out.stdout == "418"


def test_fault_abort_percentage(running: Running) -> None:
    with httpx.Client(base_url=running.url, timeout=10) as client:
        statuses = [client.get("/half").status_code for _ in range(200)]
    assert set(statuses) == {200, 503}
    # 50% of 200: outside 60..140 has a probability below 1e-8.
    assert 60 <= statuses.count(503) <= 140


def test_fault_grpc_status_reaches_the_grpc_client(running: Running) -> None:
    with (
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        channel.unary_unary(f"/{GRPC_SERVICE}/Unary")(b"hi", timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details() == "fault filter abort"


def test_unresolved_extension_ref_answers_500(running: Running) -> None:
    assert running.fresh("/missing").status_code == 500
    unresolved = running.gw.config()["snapshot"]["unresolved"]  # type: ignore[index]
    assert {
        "source": "HTTPRoute default/web",
        "field": "spec.rules[5].filters[0].extensionRef",
        "target": "RateLimit default/nowhere",
        "reason": "RateLimit not found",
    } in unresolved


def test_fault_delay_postpones_the_upstream_request(running: Running) -> None:
    """Needs the request handler to honour ``RequestContext.delay_s``."""
    started = time.monotonic()
    response = running.fresh("/slow")
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.headers["x-backend"] == "rl"
    assert elapsed >= 0.6
    started = time.monotonic()
    assert running.fresh("/per-user", headers={"x-user": "delay-check"}).status_code == 200
    assert time.monotonic() - started < 0.6


def shared_table_of(gw: GatewayProcess) -> Path:
    """The bucket table file the workers were given by the supervisor."""
    paths: set[str] = set()
    for pid in workers_of(gw):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        paths.update(
            e.split(b"=", 1)[1].decode()
            for e in environ
            if e.startswith(b"ISTHMUS_RATELIMIT_TABLE=")
        )
    assert len(paths) == 1, paths
    return Path(paths.pop())


def test_removing_the_filter_on_reload_removes_the_limit(
    tmp_path: Path, backends: tuple[HttpBackend, GrpcBackend]
) -> None:
    """Also: the workers share one table file, and it is gone when the gateway stops."""
    cfg = ConfigDir(tmp_path / "cfg")
    port = free_port()
    cfg.gateway(port)
    cfg.write("svc.yaml", backend_service_yaml("rl", backends[0].port))
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=2))
    cfg.write("limit.yaml", ratelimit_yaml("one", "{maxTokens: 1, fillInterval: 1h}"))
    cfg.write("route.yaml", http_route_yaml("web", rule("/", ext("RateLimit", "one"))))
    gw = GatewayProcess(cfg.path, workers=2).start()
    try:
        wait_until(lambda: len(workers_of(gw)) == 2, what="2 workers")
        table = shared_table_of(gw)
        assert table.exists()
        running = Running(gw, port, cfg)
        assert running.fresh("/a").status_code == 200
        assert running.fresh("/a").status_code == 429
        version = gw.config()["version"]
        assert isinstance(version, str)
        cfg.write("route.yaml", http_route_yaml("web", "  - backendRefs: [{name: rl, port: 80}]\n"))
        gw.wait_version_change(version)
        responses = [running.fresh("/a") for _ in range(5)]
        assert [r.status_code for r in responses] == [200] * 5
        assert all("ratelimit-limit" not in r.headers for r in responses)
    finally:
        gw.stop()
    assert not table.exists()
