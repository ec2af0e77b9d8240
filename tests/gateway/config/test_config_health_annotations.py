"""Active health checks from ``health.isthmus.dev/*`` Service annotations: values and defaults
reach every cluster of the Service, and each bad annotation is refused by name."""

from __future__ import annotations

import pytest
from config_support import Writer, problems

from gateway.config.compile import load_snapshot
from gateway.config.snapshot import HealthCheck


def service(annotations: dict[str, str]) -> str:
    lines = "".join(f'    "{k}": "{v}"\n' for k, v in annotations.items())
    block = f"  annotations:\n{lines}" if annotations else ""
    return (
        "apiVersion: v1\nkind: Service\n"
        f"metadata:\n  name: web\n  namespace: shop\n{block}"
        "spec:\n  ports: [{name: http, port: 80}, {name: admin, port: 9000}]\n"
    )


def health_checks(write: Writer, annotations: dict[str, str]) -> list[HealthCheck | None]:
    snapshot = load_snapshot(write("svc.yaml", service(annotations)).parent)
    return [c.health_check for c in snapshot.clusters]


def test_every_annotation_reaches_every_cluster(write: Writer) -> None:
    checks = health_checks(
        write,
        {
            "health.isthmus.dev/path": "/ready?full=1",
            "health.isthmus.dev/interval": "2s",
            "health.isthmus.dev/timeout": "250ms",
            "health.isthmus.dev/healthy-threshold": "4",
            "health.isthmus.dev/unhealthy-threshold": "1",
            "health.isthmus.dev/port": "8081",
            "health.isthmus.dev/expected-statuses": "204, 200",
        },
    )
    expected = HealthCheck(
        path="/ready?full=1",
        interval_s=2.0,
        timeout_s=0.25,
        healthy_threshold=4,
        unhealthy_threshold=1,
        port=8081,
        expected_statuses=(200, 204),
    )
    assert checks == [expected, expected]


def test_the_path_alone_enables_checks_with_the_defaults(write: Writer) -> None:
    (check, _) = health_checks(write, {"health.isthmus.dev/path": "/healthz"})
    assert check == HealthCheck(
        path="/healthz",
        interval_s=5.0,
        timeout_s=1.0,
        healthy_threshold=2,
        unhealthy_threshold=3,
        port=None,
        expected_statuses=(),
    )


def test_no_annotation_no_health_check(write: Writer) -> None:
    assert health_checks(write, {"other.dev/x": "y"}) == [None, None]


def key(name: str) -> str:
    return f'metadata.annotations["health.isthmus.dev/{name}"]'


INVALID = [
    ({"path": "healthz"}, "path", 'is not an HTTP path starting with "/"'),
    ({"path": "/a b"}, "path", "is not an HTTP path"),
    ({"interval": "5s"}, "path", "required: the other health.isthmus.dev annotations need a path"),
    ({"path": "/", "interval": "5"}, "interval", "is not a duration"),
    ({"path": "/", "interval": "0s"}, "interval", "at least 1ms"),
    ({"path": "/", "timeout": "1.0001s"}, "timeout", "whole milliseconds"),
    ({"path": "/", "timeout": "6s"}, "timeout", "must not be longer than the interval (5s)"),
    ({"path": "/", "interval": "500ms"}, "interval", "the timeout (1s) must not be longer"),
    ({"path": "/", "healthy-threshold": "0"}, "healthy-threshold", "not a whole number from 1"),
    ({"path": "/", "unhealthy-threshold": "two"}, "unhealthy-threshold", "not a whole number"),
    ({"path": "/", "port": "70000"}, "port", "is not a port number"),
    ({"path": "/", "expected-statuses": "200,abc"}, "expected-statuses", "comma-separated list"),
    ({"path": "/", "expected-statuses": "200,700"}, "expected-statuses", "100 to 599"),
    ({"path": "/", "intervall": "5s"}, "intervall", "did you mean health.isthmus.dev/interval?"),
    ({"path": "/", "grpc-service": "x"}, "grpc-service", "unknown health-check annotation"),
]


@pytest.mark.parametrize(
    ("annotations", "name", "message"), INVALID, ids=[i[1] + ":" + i[2][:30] for i in INVALID]
)
def test_bad_annotations_are_refused_by_name(
    write: Writer, annotations: dict[str, str], name: str, message: str
) -> None:
    full = {f"health.isthmus.dev/{k}": v for k, v in annotations.items()}
    found = problems(write, service(full))
    assert len(found) == 1, found
    (problem,) = found
    assert problem.obj == "Service shop/web"
    assert problem.path == key(name)
    assert message in problem.message


def test_every_bad_annotation_is_reported_at_once(write: Writer) -> None:
    found = problems(
        write,
        service(
            {
                "health.isthmus.dev/path": "/",
                "health.isthmus.dev/port": "0",
                "health.isthmus.dev/healthy-threshold": "-1",
            }
        ),
    )
    assert sorted(p.path for p in found) == [key("healthy-threshold"), key("port")]
