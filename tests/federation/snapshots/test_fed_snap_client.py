"""``ControlPlaneSource`` against a real snapshot server: changes, reports, cache, outages.

The source's calls block (the supervisor runs them in threads), so the tests call them
through ``asyncio.to_thread`` while the server runs in the test's event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from federation.snapshots.compile import ProxyInfo
from federation.snapshots.hub import SnapshotHub
from gateway.config.delta import SnapshotDelta, encode_delta
from gateway.config.errors import ConfigError
from gateway.config.resources import Resources
from gateway.config.snapshot import Cluster, Snapshot, decode, encode
from gateway.process.control_plane import ControlPlaneSource
from gateway.process.snapshot_wire import SnapshotStatus
from tests.federation.snapshots.fed_snap_helpers import (
    eventually,
    free_port,
    serve_app,
    serve_hub,
)

SERVICE = """
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  ports: [{{name: http, port: 80}}]
"""


def source(url: str, cache: Path | None = None) -> ControlPlaneSource:
    return ControlPlaneSource(
        url, "c1", cache_path=cache, wait_s=5, retry_min_s=0.05, retry_max_s=0.3
    )


async def test_changes_are_signalled_and_reports_reach_the_controller(
    tmp_path: Path, load_yaml: Callable[..., Resources]
) -> None:
    hub = SnapshotHub("east", quiet_s=0.02)
    hub.update(load_yaml(SERVICE.format(name="a")), {})
    hub.flush()
    cache = tmp_path / "snap.json"
    async with serve_hub(hub) as url:
        src = source(url, cache)
        try:
            first = await asyncio.to_thread(src.load)
            assert not src.changed()
            await asyncio.to_thread(src.report, True, "")
            assert hub.registry.get("c1").applied_version == first.version  # type: ignore[union-attr]
            assert decode(cache.read_bytes()) == first

            hub.update(load_yaml(SERVICE.format(name="b")), {})
            assert await asyncio.to_thread(src.wait_changed, 5.0)
            second = await asyncio.to_thread(src.load)
            assert [c.name for c in second.clusters] == ["default/b:80"]
            assert not src.changed()
            await asyncio.to_thread(src.report, False, "worker 0: bad regex")
            record = hub.registry.get("c1")
            assert record is not None
            assert (record.refused_version, record.error) == (second.version, "worker 0: bad regex")
            assert decode(cache.read_bytes()) == first  # only applied snapshots are cached
            # The refused version is not sent again: the next poll asks with it.
            assert not await asyncio.to_thread(src.wait_changed, 0.3)
        finally:
            src.close()


async def test_an_unreachable_controller_means_the_cache(tmp_path: Path) -> None:
    cached = Snapshot().with_version()
    cache = tmp_path / "snap.json"
    cache.write_bytes(encode(cached))
    src = source(f"http://127.0.0.1:{free_port()}", cache)
    try:
        assert await asyncio.to_thread(src.load) == cached
    finally:
        src.close()


async def test_a_corrupt_cache_is_ignored_and_the_source_waits_for_the_controller(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "snap.json"
    cache.write_bytes(b'{"version": "x", "ports": "not a list"}')
    src = source(f"http://127.0.0.1:{free_port()}", cache)
    threading.Timer(0.5, src.close).start()
    with pytest.raises(ConfigError, match="stopped waiting: it is unreachable"):
        await asyncio.to_thread(src.load)


async def test_a_report_made_during_an_outage_is_sent_when_the_controller_returns(
    tmp_path: Path, load_yaml: Callable[..., Resources]
) -> None:
    cached = Snapshot().with_version()
    cache = tmp_path / "snap.json"
    cache.write_bytes(encode(cached))
    port = free_port()
    src = source(f"http://127.0.0.1:{port}", cache)
    try:
        await asyncio.to_thread(src.load)
        await asyncio.to_thread(src.report, True, "")  # nobody listening yet
        hub = SnapshotHub("east", quiet_s=0.02)
        hub.update(load_yaml(SERVICE.format(name="a")), {})
        hub.flush()
        async with serve_hub(hub, port):
            record = await eventually(lambda: hub.registry.get("c1"), what="the proxy to poll")
            assert record is not None
            await eventually(
                lambda: (
                    hub.registry.get("c1") is record and record.applied_version == cached.version
                ),
                what="the report",
            )
            # And the controller's newer snapshot arrives.
            assert await asyncio.to_thread(src.wait_changed, 5.0)
            assert [c.name for c in (await asyncio.to_thread(src.load)).clusters] == [
                "default/a:80"
            ]
    finally:
        src.close()


async def test_an_unreadable_snapshot_is_reported_refused_and_not_applied(
    tmp_path: Path,
) -> None:
    good = Snapshot().with_version()
    reports: list[SnapshotStatus] = []
    polls = 0

    async def snapshots(request: Request) -> Response:
        nonlocal polls
        polls += 1
        if polls == 1:
            return Response(encode(good), headers={"x-isthmus-version": good.version})
        if request.query_params["version"] == "v-bad":
            await asyncio.sleep(float(request.query_params["wait"].rstrip("s")))
            return Response(status_code=304)
        return Response(b'{"version": "v-bad", "clusters": 7}', headers={
            "x-isthmus-version": "v-bad"})  # fmt: skip

    async def status(request: Request) -> Response:
        reports.append(SnapshotStatus(**(await request.json())))
        return Response(status_code=204)

    app = Starlette(
        routes=[
            Route("/v1/snapshots/{proxy_id}", snapshots),
            Route("/v1/snapshots/{proxy_id}/status", status, methods=["POST"]),
        ]
    )
    async with serve_app(app) as url:
        src = source(url)
        try:
            assert await asyncio.to_thread(src.load) == good
            await eventually(lambda: reports, what="the refusal")
            (report,) = reports
            assert report.version == "v-bad" and not report.applied
            assert "clusters" in report.error
            assert not src.changed()
        finally:
            src.close()


async def test_changes_arrive_as_deltas_and_match_the_controllers_snapshot(
    tmp_path: Path, load_yaml: Callable[..., Resources]
) -> None:
    hub = SnapshotHub("east", quiet_s=0.02)
    names = [f"s{i}" for i in range(30)]
    hub.update(load_yaml(*(SERVICE.format(name=n) for n in names)), {})
    hub.flush()
    cache = tmp_path / "snap.json"
    async with serve_hub(hub) as url:
        src = source(url, cache)
        try:
            await asyncio.to_thread(src.load)
            for step in range(3):
                names = [*names[1:], f"new{step}"]
                hub.update(load_yaml(*(SERVICE.format(name=n) for n in names)), {})
                assert await asyncio.to_thread(src.wait_changed, 5.0)
                got = await asyncio.to_thread(src.load)
                want = hub.snapshot_for(ProxyInfo(id="c1"))
                assert want is not None and got.version == want.version
                assert got.cluster_map() == want.cluster_map()
                await asyncio.to_thread(src.report, True, "")
                # The cache holds the whole snapshot, rebuilt from the delta.
                assert decode(cache.read_bytes()) == got
            assert hub.stats.deltas == 3
        finally:
            src.close()


async def test_a_delta_that_does_not_check_out_means_the_whole_snapshot() -> None:
    one = Snapshot(clusters=(Cluster(name="ns/a:80"),)).with_version()
    two = Snapshot(clusters=(Cluster(name="ns/b:80"),)).with_version()
    wrong = SnapshotDelta(base=one.version, version=two.version, head=Snapshot(),
                          clusters=(Cluster(name="ns/c:80"),), removed=("ns/a:80",))  # fmt: skip
    asked: list[tuple[str, str]] = []

    async def snapshots(request: Request) -> Response:
        version = request.query_params["version"]
        asked.append((version, request.query_params.get("delta", "")))
        if version == "":
            body = one if len(asked) == 1 else two
            return Response(encode(body), headers={"x-isthmus-version": body.version})
        if version == one.version:
            return Response(encode_delta(wrong), headers={
                "x-isthmus-version": two.version, "x-isthmus-delta-base": one.version})  # fmt: skip
        await asyncio.sleep(float(request.query_params["wait"].rstrip("s")))
        return Response(status_code=304)

    app = Starlette(routes=[Route("/v1/snapshots/{proxy_id}", snapshots)])
    async with serve_app(app) as url:
        src = source(url)
        try:
            assert await asyncio.to_thread(src.load) == one
            assert await asyncio.to_thread(src.wait_changed, 5.0)
            assert await asyncio.to_thread(src.load) == two
            assert asked[:3] == [("", ""), (one.version, "1"), ("", "")]
        finally:
            src.close()
