"""The control-plane snapshot source: ``isthmus gateway run --control-plane URL``.

A :class:`ControlPlaneSource` gets the proxy's snapshots from the federation controller
(``federation.snapshots.server``) instead of a directory. The wire protocol, plain HTTP/1.1
and JSON (mTLS comes later):

- ``GET /v1/snapshots/<proxy id>?version=V&wait=30s&role=..&namespace=..&workload=..`` waits
  until the controller has a snapshot for this proxy whose version differs from ``V`` and
  answers ``200`` with it (the ``Snapshot`` JSON, its version also in ``X-Isthmus-Version``);
  ``304`` when ``wait`` passes with nothing new; ``503`` while the controller has no snapshot
  for the proxy yet. ``V`` is the last version the proxy *received* (applied or not), so a
  refused snapshot is not sent again until the controller has a newer one. The proxy adds
  ``delta=1`` when it holds ``V``: the controller may then answer with only what changed
  since ``V`` (a ``gateway.config.delta.SnapshotDelta``, marked by ``X-Isthmus-Delta-Base``),
  which the source applies to the snapshot it holds and checks against the new version; a
  delta that does not check out is dropped and the whole snapshot fetched instead.
- ``POST /v1/snapshots/<proxy id>/status`` with :class:`SnapshotStatus` after each attempt
  to apply a received snapshot: applied, or refused with the error.

Over ``https://`` the source presents the proxy's SVID (:meth:`ControlPlaneSource.
use_credentials`, called by the supervisor before the first poll and on every renewal:
connections made after a renewal use the new certificate), verifies the controller's chain
against the trust bundle, and accepts only a controller whose SPIFFE ID is in the proxy's
own trust domain (``pki.tls_context.peer_spiffe_id``); a controller that fails the check is
treated as unreachable: nothing it answers is used. (The check reads the certificate of the
connection a request went over, so the request itself, which holds no secret, was sent.)

The long-poll runs in a daemon thread (the supervisor's loop never blocks on the network).
A new snapshot sets an event that the supervisor waits on (``wait_changed``; see
``gateway.process.supervisor``), which then loads it, applies it to every worker and calls
:meth:`ControlPlaneSource.report`; that posts the status (again after the next successful
poll when the controller was away) and, when applied, writes the snapshot to the cache file
atomically. At startup the source asks the controller once; when it is unreachable or has
nothing yet, the source starts from the cache (the last applied snapshot); without a cache
it keeps retrying until the controller answers.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec

from gateway.config.delta import DeltaMismatch, Indexed, apply, decode_delta
from gateway.config.errors import ConfigError, Problem
from gateway.config.snapshot import Snapshot, decode, encode
from gateway.process.snapshot_wire import (
    DELTA_BASE_HEADER,
    VERSION_HEADER,
    SnapshotStatus,
    snapshot_path,
)
from pki.credentials import Credentials
from pki.errors import VerificationError
from pki.files import write_private_file
from pki.tls_context import client_context, peer_spiffe_id

log = logging.getLogger("isthmus.control_plane")

MAX_ERROR_CHARS = 8192


@dataclass(slots=True)
class _Received:
    snapshot: Snapshot
    data: bytes | None  # the JSON the cache stores (as received; encoded when it was a delta)
    indexed: Indexed | None = None  # with its cluster digests, once a delta may build on it

    def json(self) -> bytes:
        if self.data is None:
            self.data = encode(self.snapshot)
        return self.data

    def index(self) -> Indexed:
        if self.indexed is None:
            self.indexed = Indexed(self.snapshot)
        return self.indexed


class _BadSnapshot(Exception):
    def __init__(self, version: str, error: str) -> None:
        super().__init__(error)
        self.version = version
        self.error = error


_NOT_READY = "not ready"


class ControlPlaneSource:
    """Snapshots long-polled from the federation controller at ``url``."""

    def __init__(
        self,
        url: str,
        proxy_id: str,
        *,
        cache_path: str | os.PathLike[str] | None = None,
        role: str = "ingress",
        namespace: str = "default",
        workload: str = "isthmus-ingress",
        labels: tuple[tuple[str, str], ...] = (),
        sidecar: tuple[str, str, str] | None = None,
        wait_s: float = 30.0,
        timeout_s: float = 5.0,
        retry_min_s: float = 0.25,
        retry_max_s: float = 5.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.proxy_id = proxy_id
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.description = f"control plane {self.url} (proxy {proxy_id})"
        self.wait_s = wait_s
        # Who the proxy is; a sidecar adds its labels and its inbound, app and outbound
        # HOST:PORT addresses (the controller compiles its listeners from them).
        self._params: list[tuple[str, str]] = [
            ("role", role), ("namespace", namespace), ("workload", workload),
            *(("label", f"{k}={v}") for k, v in labels),
            *(zip(("inbound", "app", "outbound"), sidecar, strict=True) if sidecar else ()),
        ]  # fmt: skip
        self._timeout = httpx.Timeout(timeout_s, read=wait_s + timeout_s)
        self._retry = (retry_min_s, retry_max_s)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._latest: _Received | None = None  # the newest snapshot received
        self._loaded: _Received | None = None  # what load() last returned
        self._received_version = ""  # what the next poll asks with
        self._cached_version = ""
        self._unsent: SnapshotStatus | None = None
        self._thread: threading.Thread | None = None
        self._report_timeout = httpx.Timeout(timeout_s)
        self._tls: tuple[ssl.SSLContext, str] | None = None  # context, trust domain
        self._tls_generation = 0
        self._reporter = self._client(self._report_timeout)
        self._reporter_generation = 0

    # -- SnapshotSource ------------------------------------------------------------------------

    def load(self) -> Snapshot:
        if self._thread is None:
            self._start()
        with self._lock:
            latest = self._latest
            if latest is None:  # pragma: no cover - _start() always sets it
                raise ConfigError([Problem(self.description, "no snapshot received")])
            self._loaded = latest
            self._changed.clear()
        return latest.snapshot

    def changed(self) -> bool:
        return self._changed.is_set()

    def wait_changed(self, timeout_s: float) -> bool:
        """Block until a new snapshot arrived (True) or ``timeout_s`` passed (False)."""
        return self._changed.wait(timeout_s)

    def report(self, applied: bool, error: str) -> None:
        """Whether the snapshot :meth:`load` last returned is now running. Posts the status
        and, when applied, caches the snapshot."""
        with self._lock:
            loaded = self._loaded
        if loaded is None:
            return
        version = loaded.snapshot.version
        if applied:
            self._write_cache(loaded)
        else:
            log.warning("refused snapshot %s: %s", version, error)
        with self._lock:
            self._unsent = SnapshotStatus(
                version=version, applied=applied, error=error[:MAX_ERROR_CHARS]
            )
        self._reporter, self._reporter_generation = self._current_client(
            self._reporter, self._reporter_generation, self._report_timeout
        )
        self._send_unsent(self._reporter)

    def close(self) -> None:
        self._stop.set()

    # -- identity ------------------------------------------------------------------------------

    @property
    def needs_credentials(self) -> bool:
        return self.url.startswith("https://")

    def use_credentials(self, credentials: Credentials) -> None:
        """Present ``credentials`` on connections made from now on (thread-safe)."""
        context = client_context(
            credentials.chain, credentials.key, credentials.bundle, alpn=("http/1.1",)
        )
        with self._lock:
            self._tls = (context, credentials.spiffe_id.trust_domain)
            self._tls_generation += 1

    def _client(self, timeout: httpx.Timeout) -> httpx.Client:
        with self._lock:
            tls = self._tls
        if tls is None:
            return httpx.Client(timeout=timeout)
        return httpx.Client(timeout=timeout, verify=tls[0])

    def _current_client(
        self, client: httpx.Client, generation: int, timeout: httpx.Timeout
    ) -> tuple[httpx.Client, int]:
        """``client``, or a new one when the credentials changed since ``generation``."""
        with self._lock:
            now = self._tls_generation
        if now == generation:
            return client, generation
        client.close()
        return self._client(timeout), now

    def _check_server(self, response: httpx.Response) -> None:
        """Over TLS, the controller must be a workload of this proxy's trust domain."""
        with self._lock:
            tls = self._tls
        if tls is None or not self.url.startswith("https://"):
            return
        stream = response.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        try:
            peer_spiffe_id(ssl_object, trust_domain=tls[1])
        except VerificationError as exc:
            raise httpx.ConnectError(
                f"the control plane is not a workload of trust domain {tls[1]}: {exc}",
                request=response.request,
            ) from None

    # -- startup -------------------------------------------------------------------------------

    def _start(self) -> None:
        delay, retry_max = self._retry
        cached = self._read_cache()
        waited = False
        with self._client(self._timeout) as client:
            while True:
                why = ""
                try:
                    got = self._fetch(client, "", 0.0)
                except httpx.HTTPError as exc:
                    why = f"is unreachable ({exc.__class__.__name__}: {exc})"
                except _BadSnapshot as bad:
                    self._post(client, SnapshotStatus(version=bad.version, applied=False,
                                                      error=bad.error))  # fmt: skip
                    why = f"sent a snapshot this proxy cannot read: {bad.error}"
                else:
                    if isinstance(got, _Received):
                        start = got
                        break
                    why = "has no snapshot for this proxy yet"
                if cached is not None:
                    version = cached.snapshot.version
                    log.warning("control plane %s %s; starting from the cache %s (%s)",
                                self.url, why, self.cache_path, version)  # fmt: skip
                    start = cached
                    break
                if not waited:
                    log.warning("control plane %s %s; waiting for it", self.url, why)
                    waited = True
                if self._stop.wait(delay):
                    raise ConfigError([Problem(self.description, f"stopped waiting: it {why}")])
                delay = min(delay * 2, retry_max)
        with self._lock:
            self._latest = start
            self._received_version = start.snapshot.version
        self._thread = threading.Thread(target=self._run, name="isthmus-control-plane", daemon=True)
        self._thread.start()

    # -- the long-poll thread ------------------------------------------------------------------

    def _run(self) -> None:
        retry_min, retry_max = self._retry
        delay = retry_min
        outage = False
        client = self._client(self._timeout)
        generation = self._tls_generation
        try:
            while not self._stop.is_set():
                client, generation = self._current_client(client, generation, self._timeout)
                self._send_unsent(client)
                with self._lock:
                    known = self._received_version
                try:
                    got = self._fetch(client, known, self.wait_s)
                except httpx.HTTPError as exc:
                    if not outage:
                        log.warning("control plane %s unreachable (%s); keeping %s and retrying",
                                    self.url, exc, known or "nothing")  # fmt: skip
                        outage = True
                    self._stop.wait(delay)
                    delay = min(delay * 2, retry_max)
                    continue
                except _BadSnapshot as bad:
                    log.error("control plane sent an unreadable snapshot %s: %s",
                              bad.version, bad.error)  # fmt: skip
                    with self._lock:
                        self._received_version = bad.version
                        self._unsent = SnapshotStatus(
                            version=bad.version, applied=False, error=bad.error
                        )
                    continue
                if outage:
                    log.warning("control plane %s reachable again", self.url)
                    outage = False
                delay = retry_min
                if got == _NOT_READY:
                    self._stop.wait(retry_max)
                elif isinstance(got, _Received):
                    with self._lock:
                        self._latest = got
                        self._received_version = got.snapshot.version
                        self._changed.set()
                    got.index()  # the digests the next delta builds on, off the hot moment
        finally:
            client.close()

    def _fetch(self, client: httpx.Client, version: str, wait_s: float) -> _Received | str | None:
        """One poll: the new snapshot, None when unchanged, or ``_NOT_READY``."""
        with self._lock:
            held = self._latest
        base = held if held is not None and version and held.snapshot.version == version else None
        params = [*self._params, ("version", version), ("wait", f"{wait_s:g}s")]
        if base is not None:
            params.append(("delta", "1"))
        response = client.get(self.url + snapshot_path(self.proxy_id), params=tuple(params))
        self._check_server(response)
        if response.status_code == 304:
            return None
        if response.status_code == 503:
            return _NOT_READY
        if response.status_code != 200:
            raise httpx.HTTPStatusError(
                f"{response.status_code} from the control plane: {response.text[:500]}",
                request=response.request,
                response=response,
            )
        data = response.content
        delta_base = response.headers.get(DELTA_BASE_HEADER)
        try:
            if delta_base is not None:
                delta = decode_delta(data)
            else:
                return _Received(decode(data), data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise _BadSnapshot(response.headers.get(VERSION_HEADER, "?"), str(exc)) from None
        if base is None or delta_base != base.snapshot.version:
            log.warning("control plane sent a delta from %s, which this proxy does not hold; "
                        "fetching the whole snapshot", delta_base)  # fmt: skip
            return self._fetch(client, "", 0.0)
        try:
            indexed = apply(base.index(), delta)
        except DeltaMismatch as exc:
            log.warning("dropping a snapshot delta (%s); fetching the whole snapshot", exc)
            return self._fetch(client, "", 0.0)
        return _Received(indexed.snapshot, None, indexed)

    # -- status reports ------------------------------------------------------------------------

    def _send_unsent(self, client: httpx.Client) -> None:
        with self._send_lock:
            with self._lock:
                status, self._unsent = self._unsent, None
            if status is None:
                return
            if not self._post(client, status):
                with self._lock:
                    if self._unsent is None:
                        self._unsent = status

    def _post(self, client: httpx.Client, status: SnapshotStatus) -> bool:
        try:
            response = client.post(
                self.url + snapshot_path(self.proxy_id) + "/status",
                content=msgspec.json.encode(status),
                headers={"content-type": "application/json"},
            )
        except httpx.HTTPError as exc:
            log.info("status report for %s not sent yet: %s", status.version, exc)
            return False
        if response.status_code >= 300:
            log.error("control plane refused the status report: %s %s",
                      response.status_code, response.text[:500])  # fmt: skip
        return True

    # -- the cache -----------------------------------------------------------------------------

    def _read_cache(self) -> _Received | None:
        if self.cache_path is None:
            return None
        try:
            data = self.cache_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read the snapshot cache %s: %s", self.cache_path, exc)
            return None
        try:
            snapshot = decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("ignoring the snapshot cache %s: %s", self.cache_path, exc)
            return None
        self._cached_version = snapshot.version
        return _Received(snapshot, data)

    def _write_cache(self, received: _Received) -> None:
        if self.cache_path is None or received.snapshot.version == self._cached_version:
            return
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            write_private_file(self.cache_path, received.json())
        except OSError as exc:
            log.warning("cannot write the snapshot cache %s: %s", self.cache_path, exc)
            return
        self._cached_version = received.snapshot.version
