"""Fixtures for the Kubernetes API double's own tests: a started double, a client configured from
the kubeconfig it writes, and a watch runner that streams ``kubernetes.watch.Watch`` events from
a thread into a queue the test reads with a timeout."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch

from tests.support.kube_api import KubeApiDouble


@pytest.fixture
def kube() -> Iterator[KubeApiDouble]:
    with KubeApiDouble() as double:
        yield double


@pytest.fixture
def api(kube: KubeApiDouble, tmp_path: Path) -> Iterator[client.ApiClient]:
    path = kube.write_kubeconfig(tmp_path / "kubeconfig")
    api_client = config.new_client_from_config(config_file=str(path))
    yield api_client
    api_client.close()


class WatchRun:
    """A ``Watch().stream(fn, ...)`` consumed by a thread; events land in ``events``; an
    exception that ends the stream lands in ``error``; ``done`` is set when it ends."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.watch = watch.Watch()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(fn, args, kwargs), name="watch-run", daemon=True
        )
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            for event in self.watch.stream(fn, *args, **kwargs):
                self.events.put(event)
        except BaseException as exc:  # the test inspects it
            self.error = exc
        finally:
            self.done.set()

    def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.events.get(timeout=timeout)

    def take(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        return [self.next(timeout) for _ in range(count)]

    def wait_done(self, timeout: float = 5.0) -> None:
        assert self.done.wait(timeout), "the watch did not end"

    def stop(self) -> None:
        self.watch.stop()


@pytest.fixture
def start_watch(kube: KubeApiDouble) -> Iterator[Callable[..., WatchRun]]:
    runs: list[WatchRun] = []

    def start(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> WatchRun:
        run = WatchRun(fn, *args, **kwargs)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()
    kube.close_watches()
    for run in runs:
        run.done.wait(5)
