"""The directory source (``--source DIR``): first read and synced, diffs on change, bad input
reported without losing the last good objects, and polling."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation.sources.directory import DirectorySource, SourceError
from federation.sources.store import ObjectStore
from tests.federation.sources.conftest import Recorder, endpoint_slice, service, service_export

_tick = iter(range(1, 10**6))


def _write(path: Path, *docs: object, text: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text is not None else yaml.safe_dump_all(docs))
    stamp = 1_700_000_000_000_000_000 + next(_tick) * 1_000_000_000
    os.utime(path, ns=(stamp, stamp))  # a distinct mtime even within one clock tick


def _slice(name: str) -> dict[str, Any]:
    """An EndpointSlice as a person writes it (no server-set generateName or hints)."""
    obj = endpoint_slice(name, ("10.0.0.1",))
    del obj["metadata"]["generateName"]
    for endpoint in obj["endpoints"]:
        del endpoint["hints"]
    return obj


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a directory"):
        DirectorySource(ObjectStore(), tmp_path / "nope")


async def test_first_read_fills_the_store_and_sets_synced(tmp_path: Path) -> None:
    _write(tmp_path / "web.yaml", service("web"), _slice("web"), service_export("web"))
    _write(
        tmp_path / "nested" / "list.yml",
        {"apiVersion": "v1", "kind": "List", "items": [service("api"), service_export("api")]},
    )
    _write(tmp_path / ".hidden" / "skip.yaml", service("hidden"))
    _write(tmp_path / "notes.txt", text="not yaml")
    store = ObjectStore()
    source = DirectorySource(store, tmp_path)
    store.expect(source.name)
    assert await source.refresh()

    assert store.synced.is_set()
    assert store.keys("Service") == [("Service", "shop", "api"), ("Service", "shop", "web")]
    assert len(store.items("ServiceExport")) == 2
    assert [o.name for o in store.resources().objects] == ["web-a", "api", "web"]
    assert store.problems() == ()
    assert not await source.refresh()  # nothing changed: not even read


async def test_changes_are_applied_as_a_diff(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", service("web"), service("db"))
    _write(tmp_path / "b.yaml", service("api"))
    store = ObjectStore()
    run = Recorder(store)
    source = DirectorySource(store, tmp_path)
    await source.refresh()
    mark = len(run.changes)

    _write(tmp_path / "a.yaml", service("web", ports=(81,)))  # db removed, web changed
    (tmp_path / "b.yaml").unlink()
    _write(tmp_path / "c.yaml", service("new"))
    await source.refresh()

    assert sorted((c.type, str(c.key)) for c in run.changes_since(mark)) == [
        ("ADDED", "Service shop/new"),
        ("DELETED", "Service shop/api"),
        ("DELETED", "Service shop/db"),
        ("MODIFIED", "Service shop/web"),
    ]


async def test_bad_input_is_reported_and_loses_nothing(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", service("web"))
    store = ObjectStore()
    source = DirectorySource(store, tmp_path)
    await source.refresh()

    _write(tmp_path / "a.yaml", text="kind: Service\nmetadata: [unclosed\n")
    _write(
        tmp_path / "b.yaml",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "shop"}},
        {"apiVersion": "multicluster.x-k8s.io/v2", "kind": "ServiceExport",
         "metadata": {"name": "web"}},
        ["not", "an", "object"],
        service("web"),  # also in a.yaml (kept from there)
    )  # fmt: skip
    await source.refresh()

    assert store.get("Service", "shop", "web") is not None  # kept from the last good a.yaml
    messages = [str(p) for p in store.problems()]
    assert any("a.yaml" in m and "invalid YAML" in m and "keeping its last objects" in m
               for m in messages)  # fmt: skip
    assert any('unknown kind "ConfigMap"' in m for m in messages)
    assert any("metadata.name: required field is missing" in m for m in messages)
    assert any('"multicluster.x-k8s.io/v2" is not a supported apiVersion' in m for m in messages)
    assert any("got list" in m for m in messages)
    assert any("duplicate object; first defined in" in m for m in messages)
    assert len(messages) == 6

    _write(tmp_path / "a.yaml", service("web", ports=(81,)))
    (tmp_path / "b.yaml").unlink()
    await source.refresh()
    assert store.problems() == ()
    assert store.get("Service", "shop", "web")["spec"]["ports"][0]["port"] == 81  # type: ignore[index]


async def test_a_vanished_directory_keeps_the_objects(tmp_path: Path) -> None:
    root = tmp_path / "config"
    _write(root / "a.yaml", service("web"))
    store = ObjectStore()
    source = DirectorySource(store, root)
    await source.refresh()
    (root / "a.yaml").unlink()
    root.rmdir()
    assert not await source.refresh()
    assert store.get("Service", "shop", "web") is not None
    _write(root / "a.yaml", service("api"))
    assert await source.refresh()
    assert store.keys("Service") == [("Service", "shop", "api")]


async def test_polling_picks_up_changes(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", service("web"))
    store = ObjectStore()
    run = Recorder(store)
    source = DirectorySource(store, tmp_path, poll_s=0.02)
    source.start()
    try:
        await asyncio.wait_for(store.synced.wait(), 5)
        assert store.get("Service", "shop", "web") is not None
        _write(tmp_path / "b.yaml", service("api"))
        await run.until(lambda: store.get("Service", "shop", "api") is not None, 5)
    finally:
        await source.stop()
