"""RequestMirror: records the mirror cluster, honouring percent."""

from __future__ import annotations

import pytest

from gateway.codec.messages import RequestHead
from gateway.config.snapshot import RequestMirrorFilter
from gateway.filters.base import RequestContext
from gateway.filters.request_mirror import RequestMirror


def ctx() -> RequestContext:
    return RequestContext(request=RequestHead("GET", "/", "h", []))


@pytest.mark.parametrize(
    ("percent", "draw", "mirrored"),
    [
        (100.0, 0.999, True),
        (0.0, 0.0, False),
        (50.0, 0.49, True),
        (50.0, 0.5, False),
        (0.5, 0.004, True),
        (0.5, 0.006, False),
    ],
)
def test_percent(percent: float, draw: float, mirrored: bool) -> None:
    f = RequestMirror(
        RequestMirrorFilter(cluster="ns/shadow:80", percent=percent), rand=lambda: draw
    )
    c = ctx()
    assert f.on_request(c) is None
    assert c.mirrors == (["ns/shadow:80"] if mirrored else [])


def test_default_random_mirrors_about_the_percent() -> None:
    f = RequestMirror(RequestMirrorFilter(cluster="m", percent=30.0))
    hits = 0
    for _ in range(4000):
        c = ctx()
        f.on_request(c)
        hits += len(c.mirrors)
    assert 900 < hits < 1500


def test_two_mirrors_both_recorded() -> None:
    c = ctx()
    RequestMirror(RequestMirrorFilter(cluster="a")).on_request(c)
    RequestMirror(RequestMirrorFilter(cluster="b")).on_request(c)
    assert c.mirrors == ["a", "b"]


@pytest.mark.parametrize("percent", [-1.0, 100.5])
def test_invalid_percent(percent: float) -> None:
    with pytest.raises(ValueError, match="percent"):
        RequestMirror(RequestMirrorFilter(cluster="m", percent=percent))
