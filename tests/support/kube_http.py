"""The Kubernetes API double's HTTP face: a Starlette app over :class:`KubeStore`.

Built by :mod:`tests.support.kube_api`, which serves it with uvicorn in a thread. It answers the
paths the official ``kubernetes`` client calls:

- ``/api/v1/[namespaces/{ns}/]{plural}[/{name}[/status]]`` and
  ``/apis/{group}/{version}/[namespaces/{ns}/]{plural}[/{name}[/status]]``: GET (get, list,
  ``watch``), POST (create, 201), PUT (update), PATCH (merge, strategic-as-merge for built-in
  types, JSON patch), DELETE (the object, or a Success Status for kinds that answer so);
- ``POST /apis/authentication.k8s.io/v1/tokenreviews`` (201);
- ``/version``, and ``/api/v1`` / ``/apis/{group}/{version}`` resource lists.

Every request needs ``Authorization: Bearer <token>`` (the double's token or a registered
service-account token), else 401. Errors are ``Status`` objects. Watches stream one JSON event per
line, never compressed; a watch from a compacted resourceVersion gets 200 and an in-stream ERROR
410 event (or, with ``expired_watch_as_http_410``, an HTTP 410).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.kube_patch import PATCH_TYPES, STRATEGIC
from tests.support.kube_resources import ResourceType
from tests.support.kube_status import (
    Cause,
    KubeStatusError,
    bad_request,
    invalid,
    method_not_allowed,
    request_too_large,
    unauthorized,
    unsupported_media_type,
)
from tests.support.kube_store import Event, KubeStore, Watch
from tests.support.kube_tokens import TokenRegistry

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = "application/json"
TOKENREVIEW_GV = ("authentication.k8s.io", "v1")


@dataclass
class KubeHttpSettings:
    """Behaviour switches, read on every request (tests may flip them while serving)."""

    token: str
    expired_watch_as_http_410: bool = False  # else 200 + in-stream ERROR event (watch cache)
    watch_timeout_s: float | None = None  # server-side end of every watch (like the apiserver's)
    bookmark_interval_s: float | None = None  # periodic BOOKMARKs to watches that allow them
    max_body_bytes: int = 3 * 1024 * 1024


@dataclass
class RequestRecord:
    """One request the double answered (for tests that count lists, watches, writes)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    watch: bool


def _dumps(body: Any) -> bytes:
    return msgspec.json.encode(body)  # compact JSON, several times faster than json.dumps


def _json_response(body: Any, status: int = 200) -> Response:
    return Response(_dumps(body), status_code=status, media_type=JSON)


def _status_response(error: KubeStatusError) -> Response:
    return _json_response(error.to_status(), error.code)


def _not_found_path() -> KubeStatusError:
    return KubeStatusError(404, "NotFound", "the server could not find the requested resource")


def _forbidden_option(message: str) -> KubeStatusError:
    cause = Cause("FieldValueForbidden", f"Forbidden: {message}", "resourceVersionMatch")
    return invalid("ListOptions", "meta.k8s.io", "", [cause])


def _bool(query: dict[str, str], name: str) -> bool | None:
    raw = query.get(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0", ""):
        return False
    raise bad_request(f'invalid value for {name}: "{raw}": expected a boolean')


def _int(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f'invalid value for {name}: "{raw}": expected an integer') from None


@dataclass
class _Target:
    rt: ResourceType
    namespace: str | None  # None: all namespaces (or cluster-scoped)
    name: str | None
    subresource: str | None


class _WatchStream(Response):
    """An ASGI response streaming watch events until the watch ends, times out or the client
    goes away (a disconnect ends the stream at once, not at the next event)."""

    def __init__(
        self,
        store: KubeStore,
        settings: KubeHttpSettings,
        watch: Watch | None,
        initial: list[Event],
        queue: asyncio.Queue[Event | None],
        timeout_s: float | None,
    ) -> None:
        super().__init__(status_code=200, media_type=JSON)
        self.store = store
        self.settings = settings
        self.watch = watch
        self.initial = initial
        self.queue = queue
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout_s is None else loop.time() + self.timeout_s

        async def listen() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.queue.put_nowait(None)

        listener = asyncio.create_task(listen())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", JSON.encode()),
                        (b"cache-control", b"no-cache, private"),
                    ],
                }
            )
            for event in self.initial:
                await send(
                    {"type": "http.response.body", "body": _dumps(event) + b"\n", "more_body": True}
                )
            if self.watch is not None:
                await self._pump(send, deadline)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away mid-write
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            if self.watch is not None:
                self.store.unwatch(self.watch)

    async def _pump(self, send: Send, deadline: float | None) -> None:
        assert self.watch is not None
        loop = asyncio.get_running_loop()
        while True:
            wait = self.settings.bookmark_interval_s if self.watch.bookmarks else None
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                wait = remaining if wait is None else min(wait, remaining)
            try:
                event = await asyncio.wait_for(self.queue.get(), wait)
            except TimeoutError:
                if deadline is None or loop.time() < deadline:
                    self.store.bookmark(self.watch)
                continue
            if event is None:
                return
            await send(
                {"type": "http.response.body", "body": _dumps(event) + b"\n", "more_body": True}
            )


class KubeApp:
    """Routes requests to the store; ``records`` keeps every answered request."""

    def __init__(self, store: KubeStore, tokens: TokenRegistry, settings: KubeHttpSettings):
        self.store = store
        self.tokens = tokens
        self.settings = settings
        self.records: list[RequestRecord] = []

    def starlette(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", self.endpoint, methods=methods)])

    # -- entry ----------------------------------------------------------------------------

    async def endpoint(self, request: Request) -> Response:
        query = dict(request.query_params)
        is_watch = False
        try:
            self._authenticate(request)
            is_watch = request.method == "GET" and bool(_bool(query, "watch"))
            response = await self._dispatch(request, query, is_watch)
        except KubeStatusError as error:
            response = _status_response(error)
        self.records.append(
            RequestRecord(request.method, request.url.path, query, response.status_code, is_watch)
        )
        return response

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise unauthorized()
        if credential == self.settings.token or self.tokens.lookup(credential) is not None:
            return
        raise unauthorized()

    async def _dispatch(self, request: Request, query: dict[str, str], is_watch: bool) -> Response:
        segments = [s for s in request.url.path.split("/") if s]
        if segments == ["version"]:
            return _json_response(_VERSION)
        if segments[:1] == ["api"] and len(segments) >= 2:
            group, version, rest = "", segments[1], segments[2:]
        elif segments[:1] == ["apis"] and len(segments) >= 3:
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            raise _not_found_path()
        if (group, version) == TOKENREVIEW_GV and rest == ["tokenreviews"]:
            if request.method != "POST":
                raise method_not_allowed(request.method)
            return await self._token_review(request)
        if not rest:
            if request.method != "GET" or not self.store.registry.known_group_version(
                group, version
            ):
                raise _not_found_path()
            return _json_response(self._resource_list(group, version))
        target = self._target(group, version, rest)
        if target.name is None:
            return await self._collection(request, query, target, is_watch)
        return await self._object(request, query, target)

    def _target(self, group: str, version: str, rest: list[str]) -> _Target:
        registry = self.store.registry
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            rt = registry.get(group, version, rest[2])
            if rt is not None and rt.namespaced:
                namespace, rest = rest[1], rest[2:]
        rt = registry.get(group, version, rest[0])
        if rt is None or len(rest) > 3:
            raise _not_found_path()
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) == 3 else None
        if sub is not None and sub != "status":
            raise _not_found_path()
        if rt.namespaced and namespace is None and name is not None:
            raise _not_found_path()
        return _Target(rt, namespace, name, sub)

    # -- collections ----------------------------------------------------------------------

    async def _collection(
        self, request: Request, query: dict[str, str], target: _Target, is_watch: bool
    ) -> Response:
        rt = target.rt
        if request.method == "GET":
            if is_watch:
                return await self._watch(query, target)
            body = self.store.list_collection(
                rt,
                target.namespace,
                label_selector=query.get("labelSelector"),
                field_selector=query.get("fieldSelector"),
                resource_version=query.get("resourceVersion"),
                resource_version_match=query.get("resourceVersionMatch"),
                limit=_int(query, "limit"),
                continue_token=query.get("continue"),
            )
            return _json_response(body)
        if request.method == "POST" and (target.namespace is not None or not rt.namespaced):
            payload = await self._json_body(request, rt, (JSON,))
            created = self.store.create(rt, target.namespace or "", payload)
            return _json_response(created, 201)
        raise method_not_allowed(request.method)

    async def _watch(self, query: dict[str, str], target: _Target) -> Response:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        def deliver(event: Event | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens
                loop.call_soon_threadsafe(queue.put_nowait, event)

        timeout = _int(query, "timeoutSeconds")
        timeout_s: float | None = float(timeout) if timeout and timeout > 0 else None
        if self.settings.watch_timeout_s is not None:
            timeout_s = min(
                timeout_s or self.settings.watch_timeout_s, self.settings.watch_timeout_s
            )
        bookmarks = bool(_bool(query, "allowWatchBookmarks"))
        send_initial = _bool(query, "sendInitialEvents")
        if send_initial and query.get("resourceVersionMatch") != "NotOlderThan":
            raise _forbidden_option(
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
            )
        if not send_initial and query.get("resourceVersionMatch"):
            raise _forbidden_option(
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
            )
        try:
            watch, initial = self.store.watch(
                target.rt,
                target.namespace,
                deliver=deliver,
                label_selector=query.get("labelSelector"),
                field_selector=query.get("fieldSelector"),
                resource_version=query.get("resourceVersion"),
                allow_bookmarks=bookmarks,
                send_initial_events=send_initial,
            )
        except KubeStatusError as error:
            if error.code != 410 or self.settings.expired_watch_as_http_410:
                raise
            failed = [{"type": "ERROR", "object": error.to_status()}]
            return _WatchStream(self.store, self.settings, None, failed, queue, None)
        if send_initial and bookmarks:
            initial.append(self.store.bookmark_event(target.rt, initial_events_end=True))
        return _WatchStream(self.store, self.settings, watch, initial, queue, timeout_s)

    # -- single objects -------------------------------------------------------------------

    async def _object(self, request: Request, query: dict[str, str], target: _Target) -> Response:
        rt, namespace, name = target.rt, target.namespace or "", target.name or ""
        store = self.store
        if request.method == "GET":
            return _json_response(store.get(rt, namespace, name))
        if request.method == "PUT":
            payload = await self._json_body(request, rt, (JSON,))
            updated = store.update(rt, namespace, name, payload, subresource=target.subresource)
            return _json_response(updated)
        if request.method == "PATCH":
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            allowed = PATCH_TYPES if rt.builtin else tuple(t for t in PATCH_TYPES if t != STRATEGIC)
            payload = await self._json_body(request, rt, allowed)
            patched = store.patch(
                rt, namespace, name, content_type, payload, subresource=target.subresource
            )
            return _json_response(patched)
        if request.method == "DELETE" and target.subresource is None:
            options = await self._json_body(request, rt, (JSON,), optional=True)
            preconditions = options.get("preconditions") if isinstance(options, dict) else None
            gone = store.delete(
                rt,
                namespace,
                name,
                preconditions=preconditions if isinstance(preconditions, dict) else None,
            )
            if rt.return_deleted_object:
                return _json_response(gone)
            details: dict[str, Any] = {"name": name}
            if rt.group:
                details["group"] = rt.group
            details["kind"] = rt.plural
            details["uid"] = gone["metadata"].get("uid", "")
            return _json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": details,
                }
            )
        raise method_not_allowed(request.method)

    # -- bodies ---------------------------------------------------------------------------

    async def _json_body(
        self,
        request: Request,
        rt: ResourceType | None,
        content_types: tuple[str, ...],
        *,
        optional: bool = False,
    ) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.settings.max_body_bytes:
            raise request_too_large(self.settings.max_body_bytes)
        raw = await request.body()
        if len(raw) > self.settings.max_body_bytes:
            raise request_too_large(self.settings.max_body_bytes)
        if optional and not raw.strip():
            return None
        content_type = request.headers.get("content-type", JSON).split(";")[0].strip().lower()
        if content_type not in content_types:
            raise unsupported_media_type(content_type)
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            kind = rt.kind if rt is not None else "TokenReview"
            raise bad_request(
                f"the object provided is unrecognized (must be of type {kind}): couldn't get "
                f"version/kind; json parse error: {exc}"
            ) from None

    async def _token_review(self, request: Request) -> Response:
        review = await self._json_body(request, None, (JSON,))
        if not isinstance(review, dict):
            raise bad_request("the object provided is unrecognized (must be of type TokenReview)")
        if review.get("apiVersion") not in (None, "", "authentication.k8s.io/v1"):
            raise bad_request(
                f"the API version in the data ({review.get('apiVersion')}) does not match the "
                "expected API version (authentication.k8s.io/v1)"
            )
        if review.get("kind") not in (None, "", "TokenReview"):
            raise bad_request(
                f"the kind in the data ({review.get('kind')}) does not match the expected kind "
                "(TokenReview)"
            )
        spec = review.get("spec")
        if not isinstance(spec, dict):
            spec = {}
        token = spec.get("token")
        audiences = spec.get("audiences") or []
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise bad_request("spec.audiences must be a list of strings")
        if not isinstance(token, str) or not token:
            raise bad_request("token is required for TokenReview in authentication")
        status = self.tokens.review(token, audiences)
        answer = {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status,
        }
        return _json_response(answer, 201)

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources = []
        for rt in self.store.registry.all():
            if rt.group != group or rt.version != version:
                continue
            verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
            resources.append(
                {
                    "name": rt.plural,
                    "singularName": rt.kind.lower(),
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": verbs,
                }
            )
            if rt.status_subresource:
                resources.append(
                    {
                        "name": f"{rt.plural}/status",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        group_version = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }


_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-isthmus-double",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.24",
    "compiler": "gc",
    "platform": "linux/amd64",
}
