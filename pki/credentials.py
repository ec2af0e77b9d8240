"""The credential manager every proxy runs: its own key, its certificate, renewed on time.

Built by the proxy's process layer (gateway) with the CA service's URL, the workload's SPIFFE ID,
a token source and the bootstrap trust bundle; :class:`~pki.tls_context.TlsContexts` follows it.

- **Key.** A new EC P-256 key is made in this process for every request; only the CSR leaves.
- **Request.** ``POST <ca>/v1/certificates`` (:mod:`pki.service.protocol`) with
  ``httpx.AsyncClient`` over TLS. The CA service is verified against the bootstrap bundle plus
  the latest bundle it returned, *with* host-name checking: workload certificates never carry
  DNS or IP names (the CA refuses CSRs that ask for them), so no workload can pose as the CA
  and collect tokens. The token is read anew for each request (projected tokens rotate).
- **Check.** The answer must hold a leaf for our key and our SPIFFE ID that chains to the
  bundle it came with; anything else counts as a failed attempt.
- **Renewal.** At 40 to 60 % (uniformly drawn) of the time left when the certificate arrived
  (not of ``notAfter - notBefore``: leaves are backdated 5 minutes).
- **Failure.** The current credentials stay in use; the next attempt waits an exponential
  backoff (1 s doubling up to 60 s by default, each wait drawn in its upper half so that
  proxies restarted together spread out), or the CA's ``Retry-After`` when it is longer.
- **Updates.** Callbacks registered with :meth:`CredentialManager.on_update` get each new
  :class:`Credentials`, trust bundle included (a changed bundle is logged); they run on the
  event loop and must not block.

Time is injected (:class:`Clock`): ``now`` for validity, ``sleep`` for every wait, so tests
drive renewals and backoff without waiting.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography import x509

from pki.bundle import TrustBundle, read_bundle
from pki.csr import csr_to_pem, make_csr
from pki.errors import PkiError
from pki.keys import KeyType, PrivateKey, generate_key, private_key_to_pem
from pki.pem import certificates_to_pem
from pki.service import protocol
from pki.spiffe import SpiffeId, parse_spiffe_id
from pki.verify import SvidVerifier

log = logging.getLogger(__name__)

TokenSource = Callable[[], str]


if TYPE_CHECKING:
    import httpx


class CredentialError(PkiError):
    """One attempt to get credentials failed; ``rule`` says how (``unreachable``, ``refused``,
    ``answer``, ``token``). ``retry_after_s`` is the CA's ``Retry-After``, if it sent one."""

    def __init__(self, message: str, *, rule: str, retry_after_s: float | None = None) -> None:
        super().__init__(message, rule=rule)
        self.retry_after_s = retry_after_s


class NoCredentials(PkiError):
    """:meth:`CredentialManager.current` was called before the first certificate arrived."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """One issued identity: the key, the chain (leaf first, then intermediates), the bundle."""

    spiffe_id: SpiffeId
    key: PrivateKey
    chain: tuple[x509.Certificate, ...]
    bundle: TrustBundle

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def not_after(self) -> datetime.datetime:
        return self.leaf.not_valid_after_utc

    @property
    def serial(self) -> int:
        return self.leaf.serial_number

    def chain_pem(self) -> bytes:
        return certificates_to_pem(self.chain)

    def key_pem(self) -> bytes:
        return private_key_to_pem(self.key)


class Clock(Protocol):
    def now(self) -> datetime.datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits between failed attempts: ``initial_s`` doubling to ``max_s``, jittered."""

    initial_s: float = 1.0
    max_s: float = 60.0
    factor: float = 2.0

    def delay(self, failures: int, rng: random.Random) -> float:
        """The wait after ``failures`` consecutive failures (1, 2, ...), in the upper half of
        the exponential step."""
        step = min(self.max_s, self.initial_s * self.factor ** max(0, failures - 1))
        return step / 2 + rng.uniform(0, step / 2)


def token_file(path: Path) -> TokenSource:
    """A token source reading ``path`` on every call (a projected service-account token)."""

    def read() -> str:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CredentialError(
                f"{path}: cannot read the token: {exc.strerror}", rule="token"
            ) from exc
        if not token:
            raise CredentialError(f"{path}: the token file is empty", rule="token")
        return token

    return read


def static_token(token: str) -> TokenSource:
    return lambda: token


class CredentialManager:
    """Obtains and renews one workload's credentials (see the module docstring).

    ``ca_bundle`` is the bootstrap bundle that the CA service's certificate chains to, or the
    file holding it (read before each request, so a rolled-out file is picked up).
    ``ttl`` is asked of the CA (None: its default). ``renew_window`` is the fraction of the
    remaining lifetime after which to renew, drawn uniformly between its two ends.
    """

    def __init__(
        self,
        ca_url: str,
        spiffe_id: SpiffeId | str,
        token: TokenSource,
        ca_bundle: TrustBundle | Path,
        *,
        ttl: datetime.timedelta | None = None,
        key_type: KeyType = KeyType.EC_P256,
        renew_window: tuple[float, float] = (0.4, 0.6),
        backoff: Backoff = Backoff(),
        clock: Clock | None = None,
        rng: random.Random | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        low, high = renew_window
        if not 0 < low <= high < 1:
            raise ValueError(f"renew_window: 0 < low <= high < 1, got {renew_window}")
        self.url = ca_url.rstrip("/") + protocol.PATH
        self.spiffe_id = (
            spiffe_id if isinstance(spiffe_id, SpiffeId) else parse_spiffe_id(spiffe_id)
        )
        self.ttl = ttl
        self.key_type = key_type
        self.renew_window = renew_window
        self.backoff = backoff
        self.timeout_s = timeout_s
        self.clock: Clock = clock or SystemClock()
        self._token = token
        self._ca_bundle = ca_bundle
        self._rng = rng or random.Random()
        self._current: Credentials | None = None
        self._callbacks: list[Callable[[Credentials], None]] = []
        self._ready = asyncio.Event()
        # Observability for the admin API and tests.
        self.failures = 0  # consecutive failed attempts
        self.last_error: CredentialError | None = None
        self.issued = 0  # certificates obtained so far

    # -- readers ---------------------------------------------------------------------------

    def current(self) -> Credentials:
        if self._current is None:
            raise NoCredentials(f"no certificate for {self.spiffe_id} yet", rule="not-ready")
        return self._current

    @property
    def ready(self) -> bool:
        return self._current is not None

    async def wait_ready(self) -> Credentials:
        await self._ready.wait()
        return self.current()

    def on_update(self, callback: Callable[[Credentials], None]) -> Callable[[], None]:
        """Call ``callback`` with every new :class:`Credentials`; returns an unsubscribe."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Obtain credentials, then renew them forever (until cancelled)."""
        while True:
            try:
                credentials = await self.refresh()
            except CredentialError as exc:
                delay = self.backoff.delay(self.failures, self._rng)
                if exc.retry_after_s is not None:
                    delay = max(delay, exc.retry_after_s)
                log.warning(
                    "credentials for %s: attempt %d failed (%s); %s; retrying in %.1f s",
                    self.spiffe_id,
                    self.failures,
                    exc,
                    "keeping the current certificate" if self.ready else "no certificate yet",
                    delay,
                )
                await self.clock.sleep(delay)
                continue
            await self.clock.sleep(self.renewal_delay(credentials))

    def renewal_delay(self, credentials: Credentials) -> float:
        """Seconds from now until ``credentials`` should be renewed."""
        left = (credentials.not_after - self.clock.now()).total_seconds()
        low, high = self.renew_window
        return max(0.0, left * self._rng.uniform(low, high))

    async def refresh(self) -> Credentials:
        """One attempt: new key, CSR, request, checks; on success the new credentials are
        current and the callbacks have run. Raises :class:`CredentialError`."""
        try:
            credentials = await self._request()
        except CredentialError as exc:
            self.failures += 1
            self.last_error = exc
            raise
        previous = self._current
        self._current = credentials
        self.failures = 0
        self.last_error = None
        self.issued += 1
        self._ready.set()
        if (
            previous is not None
            and previous.bundle.fingerprints() != credentials.bundle.fingerprints()
        ):
            log.info(
                "credentials for %s: the trust bundle changed (%d roots)",
                self.spiffe_id,
                len(credentials.bundle),
            )
        for callback in list(self._callbacks):
            try:
                callback(credentials)
            except Exception:
                log.exception("credentials for %s: an update callback failed", self.spiffe_id)
        return credentials

    # -- one request ------------------------------------------------------------------------

    async def _request(self) -> Credentials:
        token = await asyncio.to_thread(self._read_token)
        trusted = await self._ca_trust()
        key = generate_key(self.key_type)
        body = protocol.request_body(csr_to_pem(make_csr(key, self.spiffe_id)), self.ttl)
        context = ssl.create_default_context(cadata=trusted.to_pem().decode("ascii"))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        import httpx  # here, not at import time: proxy workers load this module, not the client

        try:
            async with httpx.AsyncClient(
                verify=context, timeout=self.timeout_s, trust_env=False
            ) as http:
                response = await http.post(
                    self.url,
                    content=body,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": protocol.CONTENT_TYPE,
                    },
                )
        except httpx.HTTPError as exc:
            raise CredentialError(
                f"the CA service at {self.url} is unreachable: {exc!r}", rule="unreachable"
            ) from exc
        if response.status_code != 200:
            raise _refusal(response)
        try:
            issued = protocol.parse_answer(response.content)
        except PkiError as exc:
            raise CredentialError(str(exc), rule="answer") from exc
        return self._checked(issued, key)

    def _read_token(self) -> str:
        try:
            return self._token()
        except CredentialError:
            raise
        except Exception as exc:
            raise CredentialError(f"cannot get a token: {exc}", rule="token") from exc

    async def _ca_trust(self) -> TrustBundle:
        source = self._ca_bundle
        try:
            bootstrap = (
                source
                if isinstance(source, TrustBundle)
                else await asyncio.to_thread(read_bundle, source)
            )
        except PkiError as exc:
            raise CredentialError(f"bootstrap trust bundle: {exc}", rule="bundle") from exc
        if self._current is not None:
            return bootstrap.merge(self._current.bundle)
        return bootstrap

    def _checked(self, issued: protocol.Issued, key: PrivateKey) -> Credentials:
        if issued.leaf.public_key() != key.public_key():
            raise CredentialError(
                "the CA answered with a certificate for another key", rule="answer"
            )
        try:
            verified = SvidVerifier(issued.bundle, trust_domain=self.spiffe_id.trust_domain).verify(
                issued.chain, now=self.clock.now()
            )
        except PkiError as exc:
            raise CredentialError(
                f"the issued certificate does not verify: {exc}", rule="answer"
            ) from exc
        if verified.spiffe_id != self.spiffe_id:
            raise CredentialError(
                f"the CA issued {verified.spiffe_id}, not {self.spiffe_id}", rule="answer"
            )
        return Credentials(self.spiffe_id, key, issued.chain, issued.bundle)


def _refusal(response: httpx.Response) -> CredentialError:
    try:
        document = response.json()
        detail = f"{document['error']}: {document['message']}"
    except (ValueError, KeyError, TypeError):
        detail = response.text[:200]
    retry_after: float | None = None
    header = response.headers.get("retry-after")
    if header is not None and header.isdigit():
        retry_after = float(header)
    return CredentialError(
        f"the CA service refused ({response.status_code}) {detail}",
        rule="refused",
        retry_after_s=retry_after,
    )
