"""``isthmus demo --clusters N``: the multi-cluster demo starts, a request to east's ingress
reaches ``hello`` in another cluster with east's identity, and Ctrl-C (here: the stop event)
stops every process."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import httpx
import pytest

from isthmus.cli import main
from isthmus.demo import DemoError, check_ports_free
from isthmus.demo_clusters import (
    LOOPBACK,
    NAMESPACE,
    TRUST_DOMAIN,
    ClustersOptions,
    all_ports,
    ports_of,
    run,
)


def free_options(tmp_path: Path, clusters: int) -> ClustersOptions:
    """Options whose whole port block is free now."""
    for _ in range(50):
        base = random.randrange(20000, 40000, 100)
        options = ClustersOptions(
            clusters=clusters,
            runtime_dir=tmp_path / "demo",
            ingress_port=base + 90,
            admin_port=base + 91,
            base_port=base,
        )
        try:
            check_ports_free(LOOPBACK, all_ports(options))
        except DemoError:
            continue
        return options
    raise AssertionError("no free block of ports")


async def test_the_multi_cluster_demo_crosses_clusters_and_stops(tmp_path: Path) -> None:
    options = free_options(tmp_path, 2)
    stop = asyncio.Event()
    demo = asyncio.create_task(run(options, stop))
    async with httpx.AsyncClient(timeout=10) as client:
        answer: dict[str, object] | None = None
        for _ in range(600):  # the demo itself waits for the first crossing before it prints
            assert not demo.done(), demo.result()
            try:
                r = await client.get(f"http://{LOOPBACK}:{options.ingress_port}/")
                if r.status_code == 200:
                    answer = r.json()
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        assert answer is not None and answer["backend"] == "hello-west"
        # web's sidecar in east reaches hello by its clusterset name too.
        outbound = f"http://{LOOPBACK}:{ports_of(options, 0).outbound}/from-web"
        host = f"hello.{NAMESPACE}.svc.clusterset.local"
        r = await client.get(outbound, headers={"host": host})
        assert r.status_code == 200 and r.json()["backend"] == "hello-west"
    log = options.runtime_dir / "clusters" / "west" / "access.log"
    for _ in range(50):
        if log.exists() and "/from-web" in log.read_text():
            break
        await asyncio.sleep(0.1)
    principals = {json.loads(line)["downstream_peer_principal"]
                  for line in log.read_text().splitlines() if line}  # fmt: skip
    assert f"spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/isthmus-ingress" in principals
    assert f"spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/web" in principals
    stop.set()
    assert await asyncio.wait_for(demo, 60) == 0
    async with httpx.AsyncClient(timeout=2) as client:
        with pytest.raises(httpx.HTTPError):  # everything stopped
            await client.get(f"http://{LOOPBACK}:{options.ingress_port}/")


def test_cluster_counts_out_of_range_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--clusters", "9"]) == 2
    assert "at most 5" in capsys.readouterr().err
    assert main(["demo", "--clusters", "2", "--example", "examples/ingress"]) == 2
