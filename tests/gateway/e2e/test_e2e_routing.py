"""Routing and filters, checked with real requests through the gateway to real backends.

Every route has its own hostname so the cases cannot interfere. Rules that share a backend
tag the request with a ``x-rule`` header (RequestHeaderModifier), so the echoed request
shows which rule matched. Covered: exact and wildcard hostnames, path Exact / PathPrefix /
RegularExpression, header (exact and regex), query parameter and method matches; the
RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect (Location), URLRewrite
(path and Host seen by the backend) and RequestMirror (the mirror gets a copy) filters;
weighted backendRefs (80/20 over 500 requests); all weights zero and an unresolved backend
(500); no matching route (404); and ``timeouts.request`` (504).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway.e2e.helpers import (
    ConfigDir,
    backend_service_yaml,
    http_route_yaml,
    settings_yaml,
    start_gateway,
)
from tests.support.backends import HttpBackend
from tests.support.gateway import free_port


def tagged(match: str, rule: str) -> str:
    """A rule to backend ``a`` that marks the request with the rule's name (``x-rule``)."""
    return (
        f"  - matches: [{match}]\n"
        "    filters: [{type: RequestHeaderModifier, requestHeaderModifier: "
        f"{{set: [{{name: x-rule, value: {rule}}}]}}}}]\n"
        "    backendRefs: [{name: a, port: 80}]\n"
    )


ROUTES = {
    "exact-host": (["exact.example.test"], "  - backendRefs: [{name: a, port: 80}]\n"),
    "wild-host": (["'*.wild.example.test'"], "  - backendRefs: [{name: b, port: 80}]\n"),
    "paths": (
        ["paths.example.test"],
        tagged("{path: {type: Exact, value: /exact}}", "exact")
        + tagged("{path: {type: PathPrefix, value: /prefix}}", "prefix")
        + tagged("{path: {type: RegularExpression, value: '/re/[0-9]+'}}", "regex"),
    ),
    "matches": (
        ["match.example.test"],
        tagged("{headers: [{name: x-env, value: canary}]}", "header-exact")
        + tagged(
            "{headers: [{type: RegularExpression, name: x-version, value: 'v[0-9]+'}]}",
            "header-regex",
        )
        + tagged("{queryParams: [{name: debug, value: '1'}]}", "query")
        + tagged("{method: DELETE}", "method")
        + tagged("{path: {type: PathPrefix, value: /}}", "default"),
    ),
    "filters": (
        ["filters.example.test"],
        "  - matches: [{path: {value: /reqhdr}}]\n"
        "    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {\n"
        "      set: [{name: x-set, value: set-value}], add: [{name: x-add, value: added}],\n"
        "      remove: [x-remove]}}]\n"
        "    backendRefs: [{name: a, port: 80}]\n"
        "  - matches: [{path: {value: /resphdr}}]\n"
        "    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {\n"
        "      set: [{name: x-resp-set, value: r1}], add: [{name: x-resp-add, value: r2}],\n"
        "      remove: [server]}}]\n"
        "    backendRefs: [{name: a, port: 80}]\n"
        "  - matches: [{path: {value: /redirect}}]\n"
        "    filters: [{type: RequestRedirect, requestRedirect: {scheme: https,\n"
        "      hostname: secure.example.test, statusCode: 301}}]\n"
        "  - matches: [{path: {value: /old}}]\n"
        "    filters: [{type: RequestRedirect, requestRedirect: {\n"
        "      path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}]\n"
        "  - matches: [{path: {value: /rewrite}}]\n"
        "    filters: [{type: URLRewrite, urlRewrite: {hostname: rewritten.example.test,\n"
        "      path: {type: ReplacePrefixMatch, replacePrefixMatch: /internal}}}]\n"
        "    backendRefs: [{name: a, port: 80}]\n"
        "  - matches: [{path: {value: /full}}]\n"
        "    filters: [{type: URLRewrite, urlRewrite: {\n"
        "      path: {type: ReplaceFullPath, replaceFullPath: /replaced}}}]\n"
        "    backendRefs: [{name: a, port: 80}]\n"
        "  - matches: [{path: {value: /mirror}}]\n"
        "    filters: [{type: RequestMirror,\n"
        "      requestMirror: {backendRef: {name: mirror, port: 80}}}]\n"
        "    backendRefs: [{name: a, port: 80}]\n",
    ),
    "weights": (
        ["weights.example.test"],
        "  - backendRefs: [{name: w80, port: 80, weight: 80}, {name: w20, port: 80, weight: 20}]\n",
    ),
    "zero": (
        ["zero.example.test"],
        "  - backendRefs: [{name: a, port: 80, weight: 0}, {name: b, port: 80, weight: 0}]\n",
    ),
    "unresolved": (["unresolved.example.test"], "  - backendRefs: [{name: missing, port: 80}]\n"),
    "timeout": (
        ["timeout.example.test"],
        "  - timeouts: {request: 200ms}\n    backendRefs: [{name: a, port: 80}]\n",
    ),
}


class Setup:
    def __init__(self, port: int, backends: dict[str, HttpBackend]) -> None:
        self.port = port
        self.backends = backends
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def request(self, host: str, path: str, method: str = "GET", **kwargs: Any) -> httpx.Response:
        headers = {"host": host, **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def rule(self, host: str, path: str, method: str = "GET", **kwargs: Any) -> str | None:
        r = self.request(host, path, method, **kwargs)
        if r.status_code != 200:
            return f"status {r.status_code}"
        rule: str | None = r.json()["headers"].get("x-rule")
        return rule


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    backends = {n: HttpBackend(n).start() for n in ("a", "b", "mirror", "w80", "w20")}
    cfg = ConfigDir(tmp_path_factory.mktemp("routing") / "cfg")
    port = free_port()
    cfg.gateway(port)
    for name, backend in backends.items():
        cfg.write(f"svc-{name}.yaml", backend_service_yaml(name, backend.port))
    for name, (hostnames, rules) in ROUTES.items():
        cfg.write(f"route-{name}.yaml", http_route_yaml(name, rules, hostnames=hostnames))
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=2))
    gw = start_gateway(cfg)
    s = Setup(port, backends)
    yield s
    s.client.close()
    gw.stop()
    for backend in backends.values():
        backend.stop()


# -- hostnames ----------------------------------------------------------------------------------


def test_exact_hostname(setup: Setup) -> None:
    r = setup.request("exact.example.test", "/x")
    assert r.status_code == 200 and r.headers["x-backend"] == "a"
    # The Host header may carry a port; matching ignores it.
    r = setup.request(f"exact.example.test:{setup.port}", "/x")
    assert r.status_code == 200 and r.headers["x-backend"] == "a"


@pytest.mark.parametrize("host", ["one.wild.example.test", "two.levels.wild.example.test"])
def test_wildcard_hostname(setup: Setup, host: str) -> None:
    r = setup.request(host, "/x")
    assert r.status_code == 200 and r.headers["x-backend"] == "b"


@pytest.mark.parametrize("host", ["wild.example.test", "other.example.test", "exact.example.tes"])
def test_no_matching_route_is_404(setup: Setup, host: str) -> None:
    assert setup.request(host, "/x").status_code == 404


# -- matches ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("/exact", "exact"),
        ("/exact/", "status 404"),
        ("/exact/more", "status 404"),
        ("/prefix", "prefix"),
        ("/prefix/", "prefix"),
        ("/prefix/deeper/path", "prefix"),
        ("/prefixed", "status 404"),  # prefixes match whole path elements
        ("/re/123", "regex"),
        ("/re/abc", "status 404"),
        ("/re/123/x", "status 404"),  # the expression must match the whole path
    ],
)
def test_path_matches(setup: Setup, path: str, rule: str) -> None:
    assert setup.rule("paths.example.test", path) == rule


def test_header_exact_match(setup: Setup) -> None:
    assert setup.rule("match.example.test", "/h", headers={"x-env": "canary"}) == "header-exact"
    assert setup.rule("match.example.test", "/h", headers={"x-env": "prod"}) == "default"


def test_header_regex_match(setup: Setup) -> None:
    assert setup.rule("match.example.test", "/h", headers={"x-version": "v42"}) == "header-regex"
    assert setup.rule("match.example.test", "/h", headers={"x-version": "vX"}) == "default"


def test_query_param_match(setup: Setup) -> None:
    assert setup.rule("match.example.test", "/q?debug=1") == "query"
    assert setup.rule("match.example.test", "/q?debug=0") == "default"


def test_method_match(setup: Setup) -> None:
    assert setup.rule("match.example.test", "/m", method="DELETE") == "method"
    assert setup.rule("match.example.test", "/m", method="GET") == "default"


# -- filters ------------------------------------------------------------------------------------


def test_request_header_modifier(setup: Setup) -> None:
    r = setup.request(
        "filters.example.test",
        "/reqhdr",
        headers={"x-set": "original", "x-add": "first", "x-remove": "gone"},
    )
    assert r.status_code == 200
    seen = r.json()["headers"]
    assert seen["x-set"] == "set-value"
    assert seen["x-add"] == "first, added"
    assert "x-remove" not in seen


def test_response_header_modifier(setup: Setup) -> None:
    r = setup.request("filters.example.test", "/resphdr")
    assert r.status_code == 200
    assert r.headers["x-resp-set"] == "r1"
    assert r.headers["x-resp-add"] == "r2"
    assert r.headers.get("server") != "uvicorn"  # the backend's header was removed


def test_request_redirect_scheme_and_host(setup: Setup) -> None:
    a_before = len(setup.backends["a"].requests)
    r = setup.request("filters.example.test", "/redirect/page?x=1")
    assert r.status_code == 301
    assert r.headers["location"] == "https://secure.example.test/redirect/page?x=1"
    assert len(setup.backends["a"].requests) == a_before  # answered by the proxy itself


def test_request_redirect_prefix_rewrite(setup: Setup) -> None:
    r = setup.request("filters.example.test", "/old/page")
    assert r.status_code == 302
    assert r.headers["location"] == "http://filters.example.test/new/page"


def test_url_rewrite_prefix_and_host(setup: Setup) -> None:
    r = setup.request("filters.example.test", "/rewrite/x/y?k=v")
    assert r.status_code == 200
    seen = r.json()
    assert seen["path"] == "/internal/x/y"
    assert seen["query"] == "k=v"
    assert seen["headers"]["host"] == "rewritten.example.test"


def test_url_rewrite_full_path(setup: Setup) -> None:
    seen = setup.request("filters.example.test", "/full/anything").json()
    assert seen["path"] == "/replaced"
    assert seen["headers"]["host"] == "filters.example.test"


def test_request_mirror_gets_a_copy(setup: Setup) -> None:
    body = b"mirror me" * 100
    r = setup.request(
        "filters.example.test", "/mirror/m1", method="POST", content=body, headers={"x-mark": "m1"}
    )
    assert r.status_code == 200 and r.headers["x-backend"] == "a"
    copy = setup.backends["mirror"].wait_for(lambda s: s.path == "/mirror/m1")
    assert copy.method == "POST"
    assert copy.headers["x-mark"] == "m1"
    assert copy.headers.get("content-length") in (None, str(len(body)))


# -- backends -----------------------------------------------------------------------------------


def test_weighted_backends_80_20(setup: Setup) -> None:
    counts: Counter[str] = Counter()
    for _ in range(500):
        r = setup.request("weights.example.test", "/w")
        assert r.status_code == 200
        counts[r.headers["x-backend"]] += 1
    assert set(counts) == {"w80", "w20"}
    # Binomial(500, 0.2): mean 100, sd ~8.9; five sd either way.
    assert 55 <= counts["w20"] <= 145, counts


def test_all_weights_zero_is_500(setup: Setup) -> None:
    assert setup.request("zero.example.test", "/z").status_code == 500


def test_unresolved_backend_is_500(setup: Setup) -> None:
    assert setup.request("unresolved.example.test", "/u").status_code == 500


def test_request_timeout_is_504(setup: Setup) -> None:
    started = time.monotonic()
    r = setup.request("timeout.example.test", "/slow?ms=2000")
    elapsed = time.monotonic() - started
    assert r.status_code == 504
    assert elapsed < 1.5, f"timeout answered after {elapsed:.2f}s"
    # A request inside the budget still succeeds.
    assert setup.request("timeout.example.test", "/slow?ms=10").status_code == 200
