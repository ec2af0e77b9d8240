"""Where a proxy's own identity comes from, and how it reaches the workers.

The supervisor owns one :class:`CredentialSource` (chosen by ``isthmus gateway run``):

- :class:`StaticCredentials` (``--cert FILE --key FILE --bundle FILE``): files, for local
  runs and tests. They are checked at start (the key fits the leaf, the chain verifies to
  the bundle under the X.509-SVID rules) and polled once a second; changed files that check
  out become the new credentials (files caught half-written are retried at the next poll).
- :class:`ManagedCredentials` (``--ca-url URL --ca-bundle FILE --token-file FILE
  --spiffe-id ID``): a :class:`~pki.credentials.CredentialManager` running in the
  supervisor. It makes the key, asks the CA service for a certificate, renews it at about
  half its lifetime and follows the trust bundle the CA returns.

One manager per proxy, not per worker: one key, one CSR per renewal, one rate-limit bucket
at the CA. The supervisor sends each new set to every worker as a ``control.Credentials``
message (PEM over the private socketpair) before the first snapshot and whenever it
changes; a worker (:func:`decode_credentials`) rebuilds its TLS contexts for new connections
only, and ignores a set equal to the one it has.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from gateway.process import control
from pki.bundle import TrustBundle
from pki.credentials import CredentialManager, Credentials, token_file
from pki.errors import PkiError
from pki.keys import private_key_from_pem
from pki.pem import load_certificates
from pki.spiffe import parse_spiffe_id
from pki.verify import SvidVerifier

log = logging.getLogger("isthmus.credentials")

# Sends credentials to the workers; returns "" or what went wrong.
Push = Callable[[Credentials], Awaitable[str]]
_POLL_S = 1.0


class CredentialsRefused(Exception):
    """Credential material that cannot be used; the message says why."""


class CredentialSource(Protocol):
    description: str

    async def first(self) -> Credentials:
        """The first credentials (waits for the CA if it must). Raises CredentialsRefused."""
        ...

    async def follow(self, push: Push) -> None:
        """Call ``push`` with every later set, until cancelled."""
        ...


def encode_credentials(credentials: Credentials) -> control.Credentials:
    return control.Credentials(
        spiffe_id=credentials.spiffe_id.uri,
        chain_pem=credentials.chain_pem(),
        key_pem=credentials.key_pem(),
        bundle_pem=credentials.bundle.to_pem(),
    )


def decode_credentials(msg: control.Credentials) -> Credentials:
    """The worker side of :func:`encode_credentials`. Raises :class:`CredentialsRefused`."""
    try:
        chain = tuple(load_certificates(msg.chain_pem, source="certificate chain"))
        key = private_key_from_pem(msg.key_pem, source="key")
        bundle = TrustBundle.from_pem(msg.bundle_pem)
        spiffe_id = parse_spiffe_id(msg.spiffe_id)
    except PkiError as exc:
        raise CredentialsRefused(f"credentials: {exc}") from exc
    return Credentials(spiffe_id, key, chain, bundle)


def check_credentials(
    chain_pem: bytes, key_pem: bytes, bundle_pem: bytes, *, where: str
) -> Credentials:
    """Credentials from PEM, checked as a peer would check them. Raises CredentialsRefused."""
    try:
        chain = tuple(load_certificates(chain_pem, source=f"{where}: certificate"))
        key = private_key_from_pem(key_pem, source=f"{where}: key")
        bundle = TrustBundle.from_pem(bundle_pem, source=f"{where}: bundle")
        if chain[0].public_key() != key.public_key():
            raise CredentialsRefused(f"{where}: the key does not belong to the certificate")
        verified = SvidVerifier(bundle).verify(chain)
    except PkiError as exc:
        raise CredentialsRefused(f"{where}: {exc}") from exc
    # Send the chain without the root: peers have it in their bundle.
    path = tuple(c for c in chain if c not in bundle)
    return Credentials(verified.spiffe_id, key, path, bundle)


class StaticCredentials:
    """Credentials from three PEM files, re-read when they change."""

    def __init__(self, cert: Path, key: Path, bundle: Path, *, poll_s: float = _POLL_S) -> None:
        self.paths = (cert, key, bundle)
        self.poll_s = poll_s
        self.description = f"files {cert}, {key}, {bundle}"
        self._stamp: tuple[tuple[int, int], ...] | None = None

    def _fingerprint(self) -> tuple[tuple[int, int], ...]:
        stamps = []
        for path in self.paths:
            st = os.stat(path)
            stamps.append((st.st_size, st.st_mtime_ns))
        return tuple(stamps)

    def load(self) -> Credentials:
        cert, key, bundle = self.paths
        try:
            stamp = self._fingerprint()
            data = [p.read_bytes() for p in self.paths]
        except OSError as exc:
            raise CredentialsRefused(f"{exc.filename}: {exc.strerror}") from exc
        credentials = check_credentials(*data, where=f"{cert.name}/{key.name}/{bundle.name}")
        self._stamp = stamp
        return credentials

    async def first(self) -> Credentials:
        return await asyncio.to_thread(self.load)

    async def follow(self, push: Push) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                if await asyncio.to_thread(self._fingerprint) == self._stamp:
                    continue
                credentials = await asyncio.to_thread(self.load)
            except (OSError, CredentialsRefused) as exc:
                log.warning("credentials from %s not (yet) usable: %s", self.description, exc)
                continue
            log.warning("credentials from %s changed: %s", self.description, credentials.spiffe_id)
            await push(credentials)


class ManagedCredentials:
    """Credentials from the CA service, renewed by a credential manager."""

    def __init__(self, manager: CredentialManager) -> None:
        self.manager = manager
        self.description = f"CA service {manager.url} as {manager.spiffe_id}"
        self._updates: asyncio.Queue[Credentials] = asyncio.Queue()
        self._run: asyncio.Task[None] | None = None

    @classmethod
    def of(
        cls,
        ca_url: str,
        ca_bundle: Path,
        token: Path,
        spiffe_id: str,
        ttl: datetime.timedelta | None = None,
    ) -> ManagedCredentials:
        """``ttl``: the certificate lifetime to ask for (None: the CA's default)."""
        try:
            manager = CredentialManager(ca_url, spiffe_id, token_file(token), ca_bundle, ttl=ttl)
        except PkiError as exc:
            raise CredentialsRefused(f"--spiffe-id: {exc}") from exc
        return cls(manager)

    async def first(self) -> Credentials:
        self.manager.on_update(self._updates.put_nowait)
        # Owned here: cancelled when follow() ends (the supervisor's task group).
        self._run = asyncio.get_running_loop().create_task(self.manager.run())
        got = asyncio.ensure_future(self._updates.get())
        done, _ = await asyncio.wait({got, self._run}, return_when=asyncio.FIRST_COMPLETED)
        if got in done:
            return got.result()
        got.cancel()
        raise CredentialsRefused(f"credential manager stopped: {self._run.exception()!r}")

    async def follow(self, push: Push) -> None:
        try:
            while True:
                await push(await self._updates.get())
        finally:
            if self._run is not None:
                self._run.cancel()


def describe(credentials: Credentials) -> dict[str, object]:
    """What ``/config`` shows of the identity (never the key)."""
    leaf = credentials.leaf
    return {
        "spiffe_id": credentials.spiffe_id.uri,
        "serial": f"{leaf.serial_number:x}",
        "not_after": leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "issuer": credentials.chain[-1].issuer.rfc4514_string(),
        "bundle_roots": len(credentials.bundle),
    }
