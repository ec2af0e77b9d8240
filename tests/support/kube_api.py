"""The Kubernetes API double: a protocol-faithful kube-apiserver peer over real HTTP, for tests.

Code under test reaches it only through the official ``kubernetes`` client, exactly as it would
reach a real API server; tests drive it both through that client and through the Python API
below. It follows ``../shared/reference/kubernetes-api.md``. Used by the federation
controller's Kubernetes source tests (issue 5) and the CA's TokenReview tests (issue 4).

Usage::

    with KubeApiDouble() as kube:
        path = kube.write_kubeconfig(tmp_path / "kubeconfig")
        api_client = kubernetes.config.new_client_from_config(config_file=str(path))
        # or kubernetes.config.load_kube_config(config_file=str(path)) for the global default
        kube.create({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "web", "namespace": "shop"},
                     "spec": {"ports": [{"port": 80}]}})
        kube.wait_for_watches(1, "v1", "Service")   # the code under test is watching
        kube.expire_history(); kube.close_watches() # its resume now gets 410 and must relist

Serving: uvicorn + Starlette in a background thread on ``127.0.0.1`` with an ephemeral port
(:attr:`KubeApiDouble.url`). Every request needs ``Authorization: Bearer <token>``: the double's
own token (:attr:`KubeApiDouble.token`, written into the kubeconfig) or a registered
service-account token; anything else gets 401 ``Unauthorized``.

Resources (:mod:`tests.support.kube_resources`): core ``v1`` Namespaces, Services, Pods, Secrets,
ConfigMaps, ServiceAccounts; ``discovery.k8s.io/v1`` EndpointSlices;
``multicluster.x-k8s.io/v1alpha1`` ServiceExports and ServiceImports; Gateway API
``gateway.networking.k8s.io/v1`` Gateway, HTTPRoute, GRPCRoute and ``v1alpha2`` TLSRoute; Istio
``networking.istio.io/v1`` DestinationRule and ``security.istio.io/v1`` PeerAuthentication,
AuthorizationPolicy, RequestAuthentication; ``isthmus.dev/v1alpha1`` RateLimit, Fault,
ProxySettings. More with :meth:`KubeApiDouble.register_resource`. The namespaces ``default``,
``kube-system``, ``kube-public`` and ``kube-node-lease`` exist from the start; a client creating
in a missing namespace gets 404, a direct :meth:`create` makes the namespace first.

Protocol (details in :mod:`tests.support.kube_store` and :mod:`tests.support.kube_http`):

- list: ``resourceVersion`` (unset/``0``: current; ``R`` with ``NotOlderThan``: current, 504 if
  R is in the future; ``Exact``: the state at R, 410 once compacted), ``limit``/``continue``
  (consistent pages, ``remainingItemCount``), ``labelSelector``, ``fieldSelector``
  (``metadata.name``, ``metadata.namespace`` and a few per kind).
- watch (``watch=true|True|1``): events ``ADDED``/``MODIFIED``/``DELETED``/``BOOKMARK``/``ERROR``
  as JSON lines, never compressed; ``resourceVersion`` unset/``0`` replays the current objects as
  ADDED; ``allowWatchBookmarks``; ``timeoutSeconds``; ``sendInitialEvents`` (with
  ``resourceVersionMatch=NotOlderThan``; ends the replay with the ``k8s.io/initial-events-end``
  bookmark). A too-old resourceVersion gets 200 and the in-stream ERROR
  ``{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version: R (C)"}``
  (with ``expired_watch_as_http_410=True``: an HTTP 410 instead).
- one global monotonic resourceVersion; ``uid``, ``creationTimestamp``, ``generation``; 409
  ``Conflict`` on a stale ``metadata.resourceVersion``, 409 ``AlreadyExists``, 404 ``NotFound``,
  422 ``Invalid``, 400 ``BadRequest`` (malformed JSON, bad selectors), 413, 415: ``Status``
  objects shaped as kube-apiserver's.
- ``POST /apis/authentication.k8s.io/v1/tokenreviews`` (see :mod:`tests.support.kube_tokens`):
  201; an unauthenticated status has no ``authenticated`` key and ``user: {}``, as Go's
  ``omitempty`` makes the real one, so the client reads ``status.authenticated`` as ``None``.

Test API (all thread-safe, callable while clients are connected):

- lifecycle: ``start()``/``stop()`` or ``with`` (or :func:`kube_api_double` in a fixture);
  :attr:`url`, :attr:`token`, :meth:`write_kubeconfig`, :meth:`configuration`,
  :meth:`api_client`. ``stop()`` ends open watches and closes the port: a client that re-issues
  its watch then fails to connect, as when an apiserver goes away.
- objects, "as if another client did it" (same events, resourceVersions and 409/404/422 rules;
  ``status`` is kept as given): :meth:`create`, :meth:`update`, :meth:`apply` (create or
  replace), :meth:`delete`, :meth:`get`, :meth:`list_objects`.
- history and watches: :meth:`expire_history` (compaction), :meth:`close_watches` (the server
  ends every stream, as at its request timeout; clients resume from their last
  resourceVersion), :meth:`expire_watches` (every open watch gets the in-stream ERROR 410,
  then ends; the client retries once from its last resourceVersion, so call
  :meth:`expire_history` first for that retry to fail too), :meth:`send_bookmark`,
  :meth:`watch_count`, :meth:`wait_for_watches` (at least / ``at_most`` N open: await this
  instead of sleeping before a write the watcher must see), :attr:`resource_version`,
  :attr:`settings` (``expired_watch_as_http_410``, ``watch_timeout_s``, ``bookmark_interval_s``;
  read on every request).
- TokenReview: :meth:`register_service_account_token`, :meth:`revoke_token`,
  :meth:`expire_token`.
- :attr:`requests`: every answered request (method, path, query, status, watch), to count
  lists and watches.

Threads: the sync client blocks one thread per open watch, and asyncio's default executor has
only ``min(32, cpus + 4)`` workers; code that holds many watches through ``asyncio.to_thread``
should give them their own executor (the double itself serves any number of streams).

Left out: server-side apply, ``dryRun``, delete-collection, finalizers and graceful deletion,
admission, RBAC (any accepted token may do anything), protobuf/CBOR, strategic-merge list
merging (applied as a merge patch), the legacy ``/api/v1/watch/...`` paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
import yaml
from kubernetes import client as k8s_client

from tests.support.kube_http import KubeApp, KubeHttpSettings, RequestRecord
from tests.support.kube_resources import ResourceRegistry, ResourceType
from tests.support.kube_status import KubeStatusError, expired
from tests.support.kube_store import KubeStore
from tests.support.kube_tokens import DEFAULT_API_AUDIENCES, ServiceAccountToken, TokenRegistry

__all__ = ["KubeApiDouble", "KubeStatusError", "ResourceType", "kube_api_double"]


class _ThreadServer(uvicorn.Server):
    """A uvicorn server that leaves signal handlers alone (it runs in a thread)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class KubeApiDouble:
    """A kube-apiserver double (see the module docstring)."""

    def __init__(
        self,
        *,
        token: str | None = None,
        api_audiences: tuple[str, ...] = DEFAULT_API_AUDIENCES,
        expired_watch_as_http_410: bool = False,
        watch_timeout_s: float | None = None,
        bookmark_interval_s: float | None = None,
        extra_resources: tuple[ResourceType, ...] = (),
    ) -> None:
        self.registry = ResourceRegistry()
        for rt in extra_resources:
            self.registry.add(rt)
        self.store = KubeStore(self.registry)
        self.tokens = TokenRegistry(api_audiences)
        self.settings = KubeHttpSettings(
            token=token if token is not None else f"double-admin.{secrets.token_urlsafe(16)}",
            expired_watch_as_http_410=expired_watch_as_http_410,
            watch_timeout_s=watch_timeout_s,
            bookmark_interval_s=bookmark_interval_s,
        )
        self.app = KubeApp(self.store, self.tokens, self.settings)
        self.host = "127.0.0.1"
        self.port = 0
        self._server: _ThreadServer | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> KubeApiDouble:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app.starlette(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=2,
        )
        server = _ThreadServer(config)
        self._server = server

        def run() -> None:
            asyncio.run(server.serve(sockets=[sock]))

        self._thread = threading.Thread(target=run, name="kube-api-double", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Kubernetes API double did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (idempotent). Open watches end; a client that re-issues its watch
        meanwhile has it ended too, then finds the port closed, as when an apiserver goes away."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            deadline = time.monotonic() + 10
            while self._thread.is_alive() and time.monotonic() < deadline:
                self.store.end_watches()
                self._thread.join(0.05)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(5)
            self._thread = None
        self.store.end_watches()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> KubeApiDouble:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token(self) -> str:
        return self.settings.token

    # -- client configuration -------------------------------------------------------------

    def kubeconfig(self, *, token: str | None = None, namespace: str = "default") -> dict[str, Any]:
        """The kubeconfig document for this double (``token`` defaults to the admin token)."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "isthmus-double", "cluster": {"server": self.url}}],
            "users": [{"name": "isthmus-double-admin", "user": {"token": token or self.token}}],
            "contexts": [
                {
                    "name": "isthmus-double",
                    "context": {
                        "cluster": "isthmus-double",
                        "user": "isthmus-double-admin",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "isthmus-double",
            "preferences": {},
        }

    def write_kubeconfig(
        self,
        path: str | Path | None = None,
        *,
        token: str | None = None,
        namespace: str = "default",
    ) -> Path:
        """Write a kubeconfig for ``kubernetes.config.load_kube_config(config_file=...)``; without
        ``path`` it goes to a temporary directory removed by :meth:`stop`."""
        if path is None:
            if self._tmpdir is None:
                self._tmpdir = tempfile.TemporaryDirectory(prefix="kube-double-")
            path = Path(self._tmpdir.name) / "kubeconfig"
        target = Path(path)
        target.write_text(yaml.safe_dump(self.kubeconfig(token=token, namespace=namespace)))
        return target

    def configuration(self, *, token: str | None = None) -> k8s_client.Configuration:
        """A client Configuration for this double, without touching the global default."""
        cfg = k8s_client.Configuration()
        cfg.host = self.url
        cfg.api_key = {"authorization": f"Bearer {token or self.token}"}
        return cfg

    def api_client(self, *, token: str | None = None) -> k8s_client.ApiClient:
        return k8s_client.ApiClient(self.configuration(token=token))

    # -- resource types -------------------------------------------------------------------

    def register_resource(self, rt: ResourceType) -> None:
        self.registry.add(rt)

    def resource(self, api_version: str, kind: str) -> ResourceType:
        rt = self.registry.for_kind(api_version, kind)
        if rt is None:
            raise KeyError(f"the double does not serve {kind} in {api_version}")
        return rt

    def _object_type(self, obj: dict[str, Any]) -> tuple[ResourceType, str]:
        rt = self.resource(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        namespace = (obj.get("metadata") or {}).get("namespace") or "default"
        return rt, namespace if rt.namespaced else ""

    # -- direct writes ("as if another client did it") ------------------------------------

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj`` (``apiVersion``/``kind`` pick the type; namespace defaults to
        ``default`` and is created if missing). Returns the stored object."""
        rt, namespace = self._object_type(obj)
        return self.store.create(rt, namespace, obj, as_client=False)

    def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace ``obj``; with ``metadata.resourceVersion`` set it must be current (409)."""
        rt, namespace = self._object_type(obj)
        name = str((obj.get("metadata") or {}).get("name", ""))
        return self.store.update(rt, namespace, name, obj, as_client=False)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj``, or replace it unconditionally if it exists."""
        rt, namespace = self._object_type(obj)
        body = dict(obj)
        body["metadata"] = {
            k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"
        }
        try:
            return self.store.create(rt, namespace, body, as_client=False)
        except KubeStatusError as error:
            if error.reason != "AlreadyExists":
                raise
        return self.store.update(rt, namespace, body["metadata"]["name"], body, as_client=False)

    def delete(
        self, api_version: str, kind: str, name: str, namespace: str = "default"
    ) -> dict[str, Any]:
        rt = self.resource(api_version, kind)
        return self.store.delete(rt, namespace if rt.namespaced else "", name)

    def get(
        self, api_version: str, kind: str, name: str, namespace: str = "default"
    ) -> dict[str, Any]:
        rt = self.resource(api_version, kind)
        return self.store.get(rt, namespace if rt.namespaced else "", name)

    def list_objects(
        self, api_version: str, kind: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        rt = self.resource(api_version, kind)
        items: list[dict[str, Any]] = self.store.list_collection(rt, namespace)["items"]
        return items

    @property
    def resource_version(self) -> int:
        return self.store.resource_version

    # -- history and watches --------------------------------------------------------------

    def expire_history(self, at: int | None = None) -> int:
        """Compact the history up to ``at`` (default: the current resourceVersion). Watches and
        ``Exact`` lists from an older resourceVersion then get 410. Returns the compaction
        point. Open watches go on; see :meth:`close_watches` and :meth:`expire_watches`."""
        return self.store.compact(at)

    def close_watches(self) -> int:
        """End every open watch stream cleanly; returns how many were open."""
        return self.store.end_watches()

    def expire_watches(self) -> int:
        """Send every open watch the in-stream ERROR 410 (Expired), then end it."""
        rv = self.store.resource_version
        error = expired(f"too old resource version: {rv} ({rv + 1})")
        return self.store.end_watches(error)

    def send_bookmark(self) -> int:
        """Send a BOOKMARK at the current resourceVersion to every watch that allowed them;
        returns how many were sent."""
        return self.store.bookmark()

    def watch_count(self, api_version: str | None = None, kind: str | None = None) -> int:
        rt = self.resource(api_version, kind) if api_version and kind else None
        return self.store.watch_count(rt)

    def wait_for_watches(
        self,
        count: int,
        api_version: str | None = None,
        kind: str | None = None,
        timeout_s: float = 10.0,
        *,
        at_most: bool = False,
    ) -> None:
        """Block until at least ``count`` watches (of that type) are open (``at_most``: until
        no more than ``count`` are, e.g. 0 once clients hung up). Raises TimeoutError."""
        rt = self.resource(api_version, kind) if api_version and kind else None

        def reached() -> bool:
            open_now = self.store.watch_count(rt)
            return open_now <= count if at_most else open_now >= count

        if not self.store.wait_for(reached, timeout_s):
            wanted = f"at most {count}" if at_most else f"at least {count}"
            raise TimeoutError(
                f"{self.store.watch_count(rt)} watches open, wanted {wanted} ({kind or 'any'})"
            )

    @property
    def requests(self) -> list[RequestRecord]:
        return list(self.app.records)

    # -- tokens ---------------------------------------------------------------------------

    def register_service_account_token(
        self,
        namespace: str,
        service_account: str,
        *,
        token: str | None = None,
        audiences: tuple[str, ...] | None = None,
        pod_name: str | None = None,
        pod_uid: str | None = None,
        expires_in_s: float | None = None,
    ) -> str:
        """Register a service-account token (``audiences`` default to the API server's;
        ``pod_name`` makes it a pod-bound token). Returns the token string."""
        entry: ServiceAccountToken = self.tokens.register(
            namespace,
            service_account,
            token=token,
            audiences=audiences,
            pod_name=pod_name,
            pod_uid=pod_uid,
            expires_in_s=expires_in_s,
        )
        return entry.token

    def revoke_token(self, token: str) -> None:
        self.tokens.revoke(token)

    def expire_token(self, token: str) -> None:
        self.tokens.expire(token)


@contextlib.contextmanager
def kube_api_double(**kwargs: Any) -> Iterator[KubeApiDouble]:
    """A started double for the duration of the block (wrap it in a pytest fixture)."""
    double = KubeApiDouble(**kwargs).start()
    try:
        yield double
    finally:
        double.stop()
