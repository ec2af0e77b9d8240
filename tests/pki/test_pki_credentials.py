"""The credential manager against the real CA service over TLS, with its waits driven by the test.

The manager's clock tells the real time (certificates are checked against it) but its ``sleep``
is handed to the test, which sees each wait the manager asks for and ends it at once. So the
renewal time, the backoff steps and their cap are asserted exactly, without sleeping.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from pki.authority import Authority, create_root
from pki.bundle import TrustBundle
from pki.cacerts import CaCerts
from pki.credentials import (
    Backoff,
    CredentialError,
    CredentialManager,
    Credentials,
    NoCredentials,
    static_token,
    token_file,
)
from pki.keys import generate_key
from pki.service.app import ServiceSettings, build_app
from pki.service.audit import AuditLog
from pki.service.bootstrap import BootstrapTokens
from pki.service.ratelimit import RateLimiter
from pki.service.server import CaServer
from pki.service.server_cert import ServerCertificate, server_names
from pki.verify import verify_svid

TD = "mesh.example"
WEB = f"spiffe://{TD}/ns/shop/sa/web"
CART = f"spiffe://{TD}/ns/shop/sa/cart"
WEB_TOKEN = "web-token-0123456789abcdef"
TTL = datetime.timedelta(seconds=60)


class DrivenClock:
    """Real ``now``; every ``sleep`` waits until the test calls :meth:`wake`."""

    def __init__(self) -> None:
        self.sleeps: asyncio.Queue[tuple[float, asyncio.Future[None]]] = asyncio.Queue()

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)

    async def sleep(self, seconds: float) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.sleeps.put((seconds, done))
        await done

    async def next_sleep(self) -> tuple[float, asyncio.Future[None]]:
        return await asyncio.wait_for(self.sleeps.get(), 30)

    async def wake(self) -> float:
        """End the manager's next wait; return how long it asked to wait."""
        seconds, done = await self.next_sleep()
        done.set_result(None)
        return seconds


class Recorder:
    """An ASGI wrapper keeping every request body, to see what leaves the proxy."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []

        async def recording() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    self.bodies.append(b"".join(chunks))
            return message

        await self.app(scope, recording, send)


class Ca:
    """A CA service on a fixed port, stoppable and restartable; ``ca`` may be swapped."""

    def __init__(self, tmp_path: Path, *, burst: int = 100) -> None:
        root = create_root(generate_key(), TD)
        key = generate_key()
        self.root = root
        self.ca = CaCerts(
            Authority.load(root.issue_intermediate(key.public_key(), "east"), key, root.full_chain),
            TrustBundle.of([root.cert]),
        )
        tokens = tmp_path / "tokens.yaml"
        tokens.write_text(f'"{WEB_TOKEN}": {{namespace: shop, serviceAccount: web}}\n')
        self.audit = AuditLog(tmp_path / "audit.jsonl")
        self.app = Recorder(
            build_app(
                lambda: self.ca,
                BootstrapTokens(tokens),
                ServiceSettings(TD),
                audit=self.audit,
                limiter=RateLimiter(burst=burst, refill_per_s=0.001),
            )
        )
        self.port = 0
        self.server: CaServer | None = None

    async def start(self) -> None:
        dns, ips = server_names("127.0.0.1")
        certificate = ServerCertificate(lambda: self.ca, dns, ips)
        self.server = CaServer(self.app, certificate, "127.0.0.1", self.port)  # type: ignore[arg-type]
        await self.server.start()
        self.port = self.server.port

    async def stop(self) -> None:
        assert self.server is not None
        await self.server.stop()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def manager(self, clock: DrivenClock | None = None, **options: Any) -> CredentialManager:
        options.setdefault("ttl", TTL)
        return CredentialManager(
            self.url,
            options.pop("spiffe_id", WEB),
            options.pop("token", static_token(WEB_TOKEN)),
            options.pop("ca_bundle", self.ca.bundle),
            clock=clock,
            rng=random.Random(7),
            **options,
        )


@pytest.fixture
async def ca(tmp_path: Path) -> AsyncIterator[Ca]:
    service = Ca(tmp_path)
    await service.start()
    yield service
    if service.server is not None:
        await service.stop()
    service.audit.close()


@pytest.fixture
async def running() -> AsyncIterator[Callable[[CredentialManager], asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []

    def run(manager: CredentialManager) -> asyncio.Task[None]:
        task = asyncio.create_task(manager.run())
        tasks.append(task)
        return task

    yield run
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_obtains_credentials_with_a_key_that_never_leaves(ca: Ca) -> None:
    manager = ca.manager()
    with pytest.raises(NoCredentials):
        manager.current()

    credentials = await manager.refresh()

    assert manager.current() is credentials
    assert str(credentials.spiffe_id) == WEB
    assert credentials.leaf.public_key() == credentials.key.public_key()
    assert verify_svid(credentials.chain, credentials.bundle) == credentials.spiffe_id
    assert credentials.bundle == ca.ca.bundle
    assert credentials.chain[1:] == (ca.ca.authority.cert,)
    lifetime = credentials.not_after - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(seconds=55) < lifetime <= TTL
    # What went over the wire: a CSR and a lifetime, never the key.
    (body,) = ca.app.bodies
    assert set(json.loads(body)) == {"csr", "ttl"}
    assert json.loads(body)["ttl"] == 60
    assert b"PRIVATE KEY" not in body
    assert credentials.key_pem() not in body


async def test_renews_at_about_half_the_lifetime_with_a_new_key(
    ca: Ca, running: Callable[[CredentialManager], asyncio.Task[None]]
) -> None:
    clock = DrivenClock()
    manager = ca.manager(clock)
    updates: list[Credentials] = []
    manager.on_update(updates.append)
    running(manager)

    first = await manager.wait_ready()
    delays = []
    for _ in range(3):
        delays.append(await clock.wake())  # each renewal waits, then gets a new certificate
    await clock.next_sleep()  # the manager is waiting again after the third renewal

    assert len(updates) == 4
    assert updates[0] is first
    assert len({u.serial for u in updates}) == 4
    assert len({u.key_pem() for u in updates}) == 4  # a new key each time
    assert manager.current() is updates[-1]
    for delay in delays:
        assert 0.4 * 55 <= delay <= 0.6 * 60  # 40-60 % of the time left
    assert len(set(delays)) == 3  # jittered


async def test_keeps_the_current_certificate_while_the_ca_is_down_and_backs_off(
    ca: Ca, running: Callable[[CredentialManager], asyncio.Task[None]]
) -> None:
    clock = DrivenClock()
    manager = ca.manager(clock, backoff=Backoff(initial_s=1.0, max_s=8.0))
    running(manager)
    held = await manager.wait_ready()

    await ca.stop()
    await clock.wake()  # the renewal time comes; the CA is down
    waits = [await clock.wake() for _ in range(5)]
    sixth_wait, retry = await clock.next_sleep()  # after the sixth failed attempt

    assert manager.current() is held  # still serving the certificate it has
    assert manager.failures == 6
    assert manager.last_error is not None and manager.last_error.rule == "unreachable"
    steps = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # doubling, capped at max_s
    for wait, step in zip([*waits, sixth_wait], steps, strict=True):
        assert step / 2 <= wait <= step  # jittered within the upper half of the step

    await ca.start()  # back, on the same address
    retry.set_result(None)  # the next retry succeeds
    renewal = await clock.next_sleep()
    assert manager.current() is not held
    assert manager.current().serial != held.serial
    assert manager.failures == 0 and manager.last_error is None
    assert renewal[0] > 20  # back to the renewal schedule


async def test_the_first_certificate_is_retried_until_the_ca_answers(
    ca: Ca, running: Callable[[CredentialManager], asyncio.Task[None]]
) -> None:
    await ca.stop()
    clock = DrivenClock()
    manager = ca.manager(clock)
    running(manager)
    await clock.wake()
    _, retry = await clock.next_sleep()  # two attempts failed
    assert not manager.ready and manager.failures == 2
    await ca.start()
    retry.set_result(None)
    credentials = await asyncio.wait_for(manager.wait_ready(), 10)
    assert str(credentials.spiffe_id) == WEB


async def test_a_refusal_is_a_failed_attempt_and_retry_after_is_honoured(
    tmp_path: Path, running: Callable[[CredentialManager], asyncio.Task[None]]
) -> None:
    service = Ca(tmp_path, burst=1)
    await service.start()
    try:
        clock = DrivenClock()
        manager = service.manager(clock, backoff=Backoff(initial_s=0.1, max_s=0.2))
        running(manager)
        await manager.wait_ready()
        await clock.wake()  # renewal: the bucket is empty now
        wait = await clock.wake()
        assert manager.last_error is not None
        assert manager.last_error.rule == "refused"
        assert "(429) rate-limited" in str(manager.last_error)
        assert wait >= 1000  # the CA's Retry-After, longer than the backoff
    finally:
        await service.stop()
        service.audit.close()


async def test_an_identity_the_token_does_not_prove_is_never_issued(ca: Ca) -> None:
    manager = ca.manager(spiffe_id=CART)
    with pytest.raises(CredentialError) as caught:
        await manager.refresh()
    assert caught.value.rule == "refused"
    assert "(403) identity-mismatch" in str(caught.value)
    assert not manager.ready and manager.failures == 1


async def test_the_ca_is_verified_against_the_bootstrap_bundle_file(ca: Ca, tmp_path: Path) -> None:
    bundle_file = tmp_path / "bundle.pem"
    stranger = create_root(generate_key(), TD)
    bundle_file.write_bytes(TrustBundle.of([stranger.cert]).to_pem())
    manager = ca.manager(ca_bundle=bundle_file)
    with pytest.raises(CredentialError) as caught:
        await manager.refresh()
    assert caught.value.rule == "unreachable"
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert ca.app.bodies == []  # the token was never sent to a server it could not verify

    await asyncio.to_thread(bundle_file.write_bytes, ca.ca.bundle.to_pem())  # rolled out
    assert (await manager.refresh()).bundle == ca.ca.bundle


async def test_the_token_file_is_read_for_every_request(ca: Ca, tmp_path: Path) -> None:
    path = tmp_path / "token"
    manager = ca.manager(token=token_file(path))
    with pytest.raises(CredentialError, match="cannot read the token"):
        await manager.refresh()
    await asyncio.to_thread(path.write_text, f"{WEB_TOKEN}\n")
    assert str((await manager.refresh()).spiffe_id) == WEB


async def test_a_changed_trust_bundle_is_followed(ca: Ca) -> None:
    manager = ca.manager()
    bundles: list[TrustBundle] = []
    manager.on_update(lambda credentials: bundles.append(credentials.bundle))
    await manager.refresh()

    new_root = create_root(generate_key(), TD)
    ca.ca = CaCerts(ca.ca.authority, ca.ca.bundle.merge(TrustBundle.of([new_root.cert])))
    await manager.refresh()

    assert [len(b) for b in bundles] == [1, 2]
    assert new_root.cert in manager.current().bundle


async def test_a_failing_update_callback_does_not_stop_the_others(ca: Ca) -> None:
    manager = ca.manager()
    seen: list[int] = []

    def broken(_: Credentials) -> None:
        raise RuntimeError("boom")

    manager.on_update(broken)
    unsubscribe = manager.on_update(lambda c: seen.append(c.serial))
    await manager.refresh()
    unsubscribe()
    await manager.refresh()
    assert len(seen) == 1


def test_backoff_steps_double_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=1.0, max_s=60.0)
    rng = random.Random(1)
    for failures, step in ((1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (30, 60)):
        wait = backoff.delay(failures, rng)
        assert step / 2 <= wait <= step
