"""Fetching JWKS documents from ``jwksUri`` in the background, off the request path.

The engine (``gateway.proxy.engine``) owns one :class:`JwksRegistry` for its life. While
it prepares a snapshot, ``listener_security`` asks the registry for the
:class:`~gateway.filters.jwks.JwksSource` of each ``jwksUri`` (the same object for the same
URI, so a reload keeps the keys already fetched); once the snapshot is committed the engine
calls :meth:`JwksRegistry.retain` with the URIs in use, which starts a fetch loop for each new
one and stops the loops of URIs no longer used.

A loop fetches at once, then every ``refresh_s`` (Istio's control plane refreshes every 20
minutes). A failed fetch (connection error, timeout, a status other than 200, a body that is
not a usable key set) keeps the last good keys and is retried with a growing delay, from 1 s
up to ``refresh_s``. Before the first good fetch a source has no keys: tokens for its issuer
are refused ("Jwks remote fetch is failed", 401), as Envoy refuses them when its
asynchronous fetch has not completed. Bodies are capped at 1 MiB.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gateway.config.snapshot import JwtRule
from gateway.filters.jwks import JwksSource

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("isthmus.jwks")

REFRESH_S = 20 * 60.0
TIMEOUT_S = 5.0
MAX_BODY_BYTES = 1024 * 1024
RETRY_FIRST_S = 1.0


class JwksFetcher:
    """Fetches one source. :meth:`refresh` is one fetch; :meth:`run` is the loop."""

    __slots__ = ("_client", "refresh_s", "source", "timeout_s")

    def __init__(
        self,
        source: JwksSource,
        client: httpx.AsyncClient,
        *,
        refresh_s: float = REFRESH_S,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        if source.uri is None:
            raise ValueError("an inline JWKS has nothing to fetch")
        self.source = source
        self._client = client
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s

    async def refresh(self) -> bool:
        """Fetch once; True when the source now holds the fetched keys."""
        import httpx

        uri = self.source.uri
        assert uri is not None
        try:
            body = await asyncio.wait_for(self._get(uri), self.timeout_s)
        except (httpx.HTTPError, OSError, TimeoutError, ValueError) as e:
            reason = f"Jwks remote fetch is failed: {type(e).__name__}: {e}"
            self.source.failed(reason)
            log.warning("JWKS %s: %s; keeping the last good keys", uri, reason)
            return False
        self.source.update(body)
        if self.source.error is not None:
            log.warning("JWKS %s: %s; keeping the last good keys", uri, self.source.error)
            return False
        return True

    async def _get(self, uri: str) -> bytes:
        async with self._client.stream("GET", uri) as response:
            if response.status_code != 200:
                raise ValueError(f"status {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise ValueError(f"the body is larger than {MAX_BODY_BYTES} bytes")
            return bytes(body)

    async def run(self) -> None:
        retry = RETRY_FIRST_S
        while True:
            if await self.refresh():
                retry = RETRY_FIRST_S
                await asyncio.sleep(self.refresh_s)
            else:
                # Jitter keeps the workers of one proxy from fetching in lockstep.
                await asyncio.sleep(retry * random.uniform(0.8, 1.2))
                retry = min(retry * 2, self.refresh_s)


class JwksRegistry:
    """The JWKS sources of an engine, one per URI, and the tasks that keep them fresh."""

    def __init__(self, *, refresh_s: float = REFRESH_S, timeout_s: float = TIMEOUT_S) -> None:
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s
        self.sources: dict[str, JwksSource] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._client: httpx.AsyncClient | None = None

    def source(self, uri: str) -> JwksSource:
        """The source of ``uri``, made (not yet fetching) when new."""
        found = self.sources.get(uri)
        if found is None:
            found = self.sources[uri] = JwksSource(uri)
        return found

    def source_for(self, rule: JwtRule) -> JwksSource:
        """The key source of a JWT rule: the shared one of its ``jwksUri``, or one made from
        its inline ``jwks`` (raises ``JwksError``, a ``ValueError``, when that is unusable)."""
        if rule.jwks is not None:
            return JwksSource.inline(rule.jwks)
        if not rule.jwks_uri:
            raise ValueError("the rule has neither jwksUri nor jwks")
        return self.source(rule.jwks_uri)

    def fetcher(self, uri: str) -> JwksFetcher:
        if self._client is None:
            import httpx  # loaded only by proxies that fetch JWKS

            self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        return JwksFetcher(
            self.source(uri), self._client, refresh_s=self.refresh_s, timeout_s=self.timeout_s
        )

    def retain(self, uris: Iterable[str]) -> None:
        """Keep fetching exactly ``uris``: start loops for new ones, stop the others."""
        keep = set(uris)
        for uri in list(self.tasks):
            if uri not in keep:
                self.tasks.pop(uri).cancel()
        for uri in list(self.sources):
            if uri not in keep:
                del self.sources[uri]
        for uri in sorted(keep):
            if uri not in self.tasks:
                task = asyncio.get_running_loop().create_task(self.fetcher(uri).run())
                task.add_done_callback(self._done)
                self.tasks[uri] = task

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("JWKS fetch loop failed", exc_info=task.exception())

    async def aclose(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.shield(client.aclose())

    def __repr__(self) -> str:
        ready = sum(1 for s in self.sources.values() if s.keys is not None)
        return f"<JwksRegistry [{len(self.sources)} sources, {ready} with keys]>"
