"""The typed edge between Consul sync and py-consul: every Consul request goes through here.

Called by ``export``, ``imports`` and ``leader``. ``ConsulApi`` wraps one py-consul asyncio
client (``consul.aio.Consul``), gives each call a client-side deadline (a blocking query's
is its wait plus Consul's wait/16 jitter plus the request timeout, so a hung server cannot
hold a loop forever), and turns every failure (connection refused, timeout, 5xx, a
malformed answer) into ``ConsulError`` so that callers have one thing to catch, count and
retry.

A ``ClientFactory`` makes a new py-consul client; ``client_factory(address)`` builds one from
``http://host:port``, ``https://host:port`` or ``host:port`` (``None``: py-consul's own
``CONSUL_HTTP_ADDR``/``CONSUL_HTTP_TOKEN`` environment). Tests pass their own factory, e.g.
to count the writes a client makes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

import aiohttp
import consul
import consul.aio

from federation.consul import node_read
from federation.consul.blocking import parse_index

ClientFactory = Callable[[], Any]  # returns a consul.aio.Consul (py-consul is untyped)


class ConsulError(Exception):
    """A Consul request failed: unreachable, timed out, refused or answered nonsense."""


def client_factory(
    address: str | None, *, token: str | None = None, connections_limit: int = 64
) -> ClientFactory:
    """A factory of ``consul.aio.Consul`` clients for ``address`` (see the module doc)."""
    if address is None:
        return lambda: consul.aio.Consul(token=token, connections_limit=connections_limit)
    text = address if "//" in address else "//" + address
    parsed = urlparse(text)
    if parsed.scheme not in ("", "http", "https") or not parsed.hostname:
        raise ValueError(f"Consul address must be [http[s]://]HOST:PORT, got {address!r}")
    try:
        port = parsed.port or 8500
    except ValueError:
        raise ValueError(f"Consul address has a bad port: {address!r}") from None
    host, scheme = parsed.hostname, parsed.scheme or "http"
    return lambda: consul.aio.Consul(
        host=host, port=port, scheme=scheme, token=token, connections_limit=connections_limit
    )


def _go_duration(seconds: int) -> str:
    return f"{seconds}s"


def _node_body(node: str, data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConsulError(f"read node {node}: expected an object, got {type(data).__name__}")
    return data


class ConsulApi:
    """The Consul calls Consul sync makes, typed, with deadlines and one error type."""

    def __init__(self, client: Any, *, request_timeout_s: float = 10.0) -> None:
        self.client = client
        self.request_timeout_s = request_timeout_s

    async def close(self) -> None:
        try:
            await self.client.close()
        except Exception:  # closing a broken session must not mask the real error
            pass

    async def _call(self, what: str, make: Callable[[], Awaitable[Any]], limit_s: float) -> Any:
        try:
            async with asyncio.timeout(limit_s):  # not wait_for: 3.11's can swallow a cancel
                return await make()
        except TimeoutError:
            raise ConsulError(f"{what}: no answer within {limit_s:.1f}s") from None
        except consul.ConsulException as exc:
            raise ConsulError(f"{what}: {type(exc).__name__}: {exc}") from None
        except (aiohttp.ClientError, OSError, json.JSONDecodeError, ValueError) as exc:
            raise ConsulError(f"{what}: {type(exc).__name__}: {exc}") from None
        except (RuntimeError, TypeError, KeyError, AttributeError) as exc:
            # py-consul or aiohttp tripping over a broken answer or a closed session: one
            # more way for a request to fail, never a reason for a loop to die.
            raise ConsulError(f"{what}: unexpected {type(exc).__name__}: {exc}") from None

    async def _read(
        self, what: str, make: Callable[[], Awaitable[Any]], limit_s: float
    ) -> tuple[int, Any]:
        """A read with an index: ``(index, data)``, a missing or bad index a ConsulError."""
        answer = await self._call(what, make, limit_s)
        try:
            raw_index, data = answer
            return parse_index(raw_index), data
        except (TypeError, ValueError) as exc:
            raise ConsulError(f"{what}: {exc}") from None

    def _blocking_timeout(self, wait_s: int) -> float:
        return wait_s + wait_s / 16 + self.request_timeout_s

    # -- catalog -----------------------------------------------------------------------

    async def node(self, node: str) -> dict[str, Any] | None:
        """``/v1/catalog/node/<node>``: ``{"Node": {...}, "Services": {id: {...}}}`` or None."""
        _index, data = await self._read(
            f"read node {node}", lambda: self.client.catalog.node(node), self.request_timeout_s
        )
        return _node_body(node, data)

    async def watch_node(
        self, node: str, index: int, wait_s: int
    ) -> tuple[int, node_read.NodeServices | None]:
        """Blocking ``/v1/catalog/node/<node>``: the node and its services, or None when
        Consul has no such node (decoded as ``node_read`` says)."""
        got, data = await self._read(
            f"watch node {node}",
            lambda: node_read.request(
                self.client, node, str(index) if index else None, _go_duration(wait_s)
            ),
            self._blocking_timeout(wait_s),
        )
        return got, data

    async def register(
        self,
        node: str,
        address: str,
        service: dict[str, Any],
        check: dict[str, Any] | None = None,
    ) -> None:
        ok = await self._call(
            f"register {service.get('ID')} on {node}",
            lambda: self.client.catalog.register(node, address, service=service, check=check),
            self.request_timeout_s,
        )
        if ok is not True:
            raise ConsulError(f"register {service.get('ID')} on {node}: answered {ok!r}")

    async def deregister(self, node: str, service_id: str) -> None:
        ok = await self._call(
            f"deregister {service_id} from {node}",
            lambda: self.client.catalog.deregister(node, service_id=service_id),
            self.request_timeout_s,
        )
        if ok is not True:
            raise ConsulError(f"deregister {service_id} from {node}: answered {ok!r}")

    async def services(self, index: int, wait_s: int) -> tuple[int, dict[str, list[str]]]:
        """Blocking ``/v1/catalog/services``: name -> tags."""
        index_got, data = await self._read(
            "list services",
            lambda: self.client.catalog.services(
                index=str(index) if index else None, wait=_go_duration(wait_s)
            ),
            self._blocking_timeout(wait_s),
        )
        if not isinstance(data, dict):
            raise ConsulError(f"list services: expected an object, got {type(data).__name__}")
        return index_got, {str(k): list(v or ()) for k, v in data.items()}

    async def health_service(
        self, name: str, index: int, wait_s: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """Blocking ``/v1/health/service/<name>``: ``[{Node, Service, Checks}]``."""
        index_got, data = await self._read(
            f"read health of {name}",
            lambda: self.client.health.service(
                name, index=str(index) if index else None, wait=_go_duration(wait_s)
            ),
            self._blocking_timeout(wait_s),
        )
        if data is None:
            data = []
        if not isinstance(data, list):
            raise ConsulError(f"read health of {name}: expected a list, got {type(data).__name__}")
        return index_got, data

    # -- KV and sessions (leader election) ---------------------------------------------

    async def kv_get(self, key: str, index: int, wait_s: int) -> tuple[int, dict[str, Any] | None]:
        index_got, data = await self._read(
            f"read key {key}",
            lambda: self.client.kv.get(
                key, index=str(index) if index else None, wait=_go_duration(wait_s)
            ),
            self._blocking_timeout(wait_s),
        )
        if data is not None and not isinstance(data, dict):
            raise ConsulError(f"read key {key}: expected an object, got {type(data).__name__}")
        return index_got, data

    async def kv_acquire(self, key: str, value: str, session: str) -> bool:
        ok = await self._call(
            f"acquire {key}",
            lambda: self.client.kv.put(key, value, acquire=session),
            self.request_timeout_s,
        )
        return ok is True

    async def kv_release(self, key: str, value: str, session: str) -> bool:
        ok = await self._call(
            f"release {key}",
            lambda: self.client.kv.put(key, value, release=session),
            self.request_timeout_s,
        )
        return ok is True

    async def session_create(self, name: str, ttl_s: int, lock_delay_s: int) -> str:
        sid = await self._call(
            "create session",
            lambda: self.client.session.create(
                name=name, ttl=ttl_s, lock_delay=lock_delay_s, behavior="release"
            ),
            self.request_timeout_s,
        )
        if not isinstance(sid, str) or not sid:
            raise ConsulError(f"create session: answered {sid!r}")
        return sid

    async def session_renew(self, session: str, timeout_s: float | None = None) -> bool:
        """Renew; False when Consul no longer knows the session (it was invalidated)."""
        timeout = timeout_s or self.request_timeout_s
        try:
            async with asyncio.timeout(timeout):
                result = await self.client.session.renew(session)
        except consul.NotFound:
            return False
        except TimeoutError:
            raise ConsulError(f"renew session: no answer within {timeout:.1f}s") from None
        except consul.ConsulException as exc:
            raise ConsulError(f"renew session: {type(exc).__name__}: {exc}") from None
        except (aiohttp.ClientError, OSError, ValueError, RuntimeError, TypeError) as exc:
            raise ConsulError(f"renew session: {type(exc).__name__}: {exc}") from None
        return result is not None

    async def session_destroy(self, session: str) -> None:
        await self._call(
            "destroy session",
            lambda: self.client.session.destroy(session),
            self.request_timeout_s,
        )
