"""The snapshot server: the Starlette app proxies long-poll for their snapshots.

:func:`build_app` wraps a :class:`~federation.snapshots.hub.SnapshotHub`; the controller
serves it with uvicorn in its own event loop (the hub's). The API (the client side is
``gateway.process.control_plane``, which defines the status body):

- ``GET /v1/snapshots/{proxy_id}?version=V&wait=30s`` (optional ``role``, ``namespace``,
  ``workload`` describe the proxy; ``label=key=value`` may repeat): answers ``200`` with the
  proxy's snapshot as soon as its version differs from ``V`` (at once when it already does),
  with the version in ``X-Isthmus-Version``. With ``delta=1``, when ``V`` is one of the
  proxy's recent versions, the body is a ``gateway.config.delta.SnapshotDelta`` from ``V``
  instead (only the clusters that changed), marked by ``X-Isthmus-Delta-Base: V``;
  ``304`` when ``wait`` (default 30 s, at most 300 s; ``500ms``, ``30s``, ``1m`` or plain
  seconds) passes first; ``503`` with the reason while there is no snapshot for the proxy
  (the controller has not synced, or its configuration has never compiled).
- ``POST /v1/snapshots/{proxy_id}/status`` with ``{"version", "applied", "error"}``: the
  proxy applied that version, or refused it and why. ``204``.
- ``GET /v1/proxies``: every proxy that polled, its version, whether it is in sync, its last
  error, and the push counters (``federation.snapshots.status`` renders it).

Over mTLS (``build_app(hub, require_peer=True)``, the controller run with ``--cert --key
--bundle``; ``federation.peer`` puts the client's identity in the scope): both snapshot
routes answer ``403`` to a client without an SVID of the mesh, and to one whose SPIFFE ID
names another namespace than the ``namespace`` the proxy asks for (as Istio authorizes its
proxies: a workload gets only its own namespace's configuration). ``/v1/proxies`` stays open
to any client, as ``/metrics`` is. Without TLS the controller binds it to loopback.
"""

from __future__ import annotations

import re

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from federation.peer import peer_of
from federation.snapshots.bodies import BodyCache, reply
from federation.snapshots.compile import ProxyInfo
from federation.snapshots.hub import SnapshotHub
from gateway.config.snapshot import encode
from gateway.process.snapshot_wire import DELTA_BASE_HEADER, VERSION_HEADER, SnapshotStatus

DEFAULT_WAIT_S = 30.0
MAX_WAIT_S = 300.0
MAX_STATUS_BYTES = 64 * 1024

_PROXY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,100}:[0-9]{1,5}$")
_SHORT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,252}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


class BadRequest(Exception):
    pass


def parse_wait(value: str | None) -> float:
    if value is None or value == "":
        return DEFAULT_WAIT_S
    found = _DURATION.match(value.strip())
    if found is None:
        raise BadRequest(f"wait={value!r}: expected a duration such as 500ms, 30s or 1m")
    seconds = float(found.group(1)) * _UNIT_S[found.group(2)]
    if seconds > MAX_WAIT_S:
        raise BadRequest(f"wait={value!r}: at most {MAX_WAIT_S:g}s")
    return seconds


def _proxy_id(request: Request) -> str:
    proxy_id = str(request.path_params["proxy_id"])
    if not _PROXY_ID.match(proxy_id):
        raise BadRequest(f"proxy id {proxy_id!r}: letters, digits, '.', '_', ':', '-' only")
    return proxy_id


def proxy_info(request: Request) -> ProxyInfo:
    query = request.query_params
    fields: dict[str, str] = {}
    for name in ("role", "namespace", "workload"):
        value = query.get(name)
        if value:
            if not _SHORT.match(value):
                raise BadRequest(f"{name}={value!r} is not a valid name")
            fields[name] = value
    for name in ("inbound", "app", "outbound"):  # a sidecar's HOST:PORT addresses
        value = query.get(name)
        if value:
            if not _ADDRESS.match(value):
                raise BadRequest(f"{name}={value!r}: expected HOST:PORT")
            fields[name] = value
    labels = []
    for entry in query.getlist("label"):
        key, eq, value = entry.partition("=")
        if not eq or not key:
            raise BadRequest(f"label={entry!r}: expected key=value")
        labels.append((key, value))
    return ProxyInfo(id=_proxy_id(request), labels=tuple(sorted(labels)), **fields)


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _forbidden(request: Request, namespace: str | None) -> str:
    """Why the client may not use the snapshot routes ("" when it may)."""
    peer = peer_of(request.scope)
    if peer.spiffe_id is None:
        return f"an SVID of the mesh is required ({peer.error})"
    segments = peer.spiffe_id.segments
    if namespace is not None and (len(segments) < 2 or segments[:2] != ("ns", namespace)):
        return f"{peer.spiffe_id} may not read the configuration of namespace {namespace!r}"
    return ""


def build_app(hub: SnapshotHub, *, require_peer: bool = False) -> Starlette:
    """The snapshot API over ``hub``; with ``require_peer``, for mesh workloads only."""
    # Proxies of one shape move between the same versions: each body is encoded once.
    bodies = BodyCache()

    async def get_snapshot(request: Request) -> Response:
        try:
            info = proxy_info(request)
            wait_s = parse_wait(request.query_params.get("wait"))
        except BadRequest as exc:
            return _bad(str(exc))
        if require_peer and (why := _forbidden(request, info.namespace)):
            return _bad(why, 403)
        known = request.query_params.get("version", "")
        wants_delta = request.query_params.get("delta", "") in ("1", "true")
        snapshot = await hub.poll(info, known, wait_s)
        if snapshot is not None:
            headers = {VERSION_HEADER: snapshot.version}
            pair = hub.delta_pair(info, known, snapshot) if wants_delta and known else None
            if pair is not None:
                headers[DELTA_BASE_HEADER] = known
                old, new = pair
                body = bodies.get(f"{known}>{snapshot.version}", lambda: hub.encode_delta(old, new))
            else:
                body = bodies.get(snapshot.version, lambda: encode(snapshot))
            return reply(request, body, headers)
        if hub.snapshot_for(info) is None:
            reason = hub.compile_error(info) or "the controller has no snapshot yet"
            return JSONResponse(
                {"error": f"no snapshot for proxy {info.id}: {reason}"},
                status_code=503,
                headers={"retry-after": "1"},
            )
        return Response(status_code=304, headers={VERSION_HEADER: known})

    async def post_status(request: Request) -> Response:
        try:
            proxy_id = _proxy_id(request)
        except BadRequest as exc:
            return _bad(str(exc))
        if require_peer:
            record = hub.registry.get(proxy_id)
            why = _forbidden(request, record.info.namespace if record is not None else None)
            if why:
                return _bad(why, 403)
        body = await request.body()
        if len(body) > MAX_STATUS_BYTES:
            return _bad(f"status body over {MAX_STATUS_BYTES} bytes", 413)
        try:
            status = msgspec.json.decode(body, type=SnapshotStatus)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _bad(f"status body: {exc}")
        hub.report(proxy_id, status.version, status.applied, status.error)
        return Response(status_code=204)

    async def get_proxies(request: Request) -> Response:
        return JSONResponse(hub.proxies_json())

    return Starlette(
        routes=[
            Route("/v1/snapshots/{proxy_id}", get_snapshot, methods=["GET"]),
            Route("/v1/snapshots/{proxy_id}/status", post_status, methods=["POST"]),
            Route("/v1/proxies", get_proxies, methods=["GET"]),
        ]
    )
