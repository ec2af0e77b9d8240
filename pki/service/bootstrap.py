"""Bootstrap tokens: a file mapping bearer tokens to identities, for local runs without Kubernetes.

``isthmus pki serve --bootstrap-tokens FILE`` builds a :class:`BootstrapTokens`; the CA service
calls :meth:`BootstrapTokens.check`. The file is YAML (JSON is YAML too), one entry per token::

    # token (at least 16 characters), or "sha256:<64 hex digits>" of the token
    "Zq9...long random token...": {namespace: shop, serviceAccount: web}
    "sha256:5f1d...":             {namespace: shop, serviceAccount: cart}

Only SHA-256 digests are kept in memory; a presented token is hashed and compared with every
entry through :func:`hmac.compare_digest`, so the time taken does not tell which prefix matched.
The file is read again when its size, mtime or inode changes (checked on each request, a
``stat``); a changed file that does not parse is refused with a logged error and the last good
tokens stay in force, so a typo never locks every proxy out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pki.errors import PkiError
from pki.service.tokens import Identity, TokenRejected

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16
_DIGEST_KEY = re.compile(r"sha256:([0-9a-fA-F]{64})")
_FIELDS = {"namespace", "serviceAccount"}


class TokenFileError(PkiError):
    """The bootstrap token file cannot be read or is malformed; the message names the entry."""


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    identity: Identity


def parse_token_file(text: str, *, source: str) -> tuple[_Entry, ...]:
    """Parse the file's content into entries; raise :class:`TokenFileError` naming the entry."""
    try:
        document: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TokenFileError(f"{source}: not YAML ({exc})", rule="token-file") from exc
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise TokenFileError(
            f"{source}: expected a mapping of token to {{namespace, serviceAccount}}",
            rule="token-file",
        )
    entries: list[_Entry] = []
    for index, (key, value) in enumerate(document.items(), start=1):
        where = f"{source}: entry {index}"
        if not isinstance(key, str):
            raise TokenFileError(f"{where}: the token must be a string", rule="token-file")
        digest_match = _DIGEST_KEY.fullmatch(key)
        if digest_match:
            digest = bytes.fromhex(digest_match.group(1))
        elif key.startswith("sha256:"):
            raise TokenFileError(
                f"{where}: 'sha256:' must be followed by 64 hex digits", rule="token-file"
            )
        elif len(key) < MIN_TOKEN_CHARS:
            raise TokenFileError(
                f"{where}: tokens must have at least {MIN_TOKEN_CHARS} characters",
                rule="token-file",
            )
        else:
            digest = token_digest(key)
        if not isinstance(value, dict) or set(value) != _FIELDS:
            raise TokenFileError(
                f"{where}: the value must be {{namespace: ..., serviceAccount: ...}}",
                rule="token-file",
            )
        namespace, service_account = value["namespace"], value["serviceAccount"]
        if not isinstance(namespace, str) or not isinstance(service_account, str):
            raise TokenFileError(
                f"{where}: namespace and serviceAccount are strings", rule="token-file"
            )
        subject = f"bootstrap:{namespace}/{service_account}#{index}"
        try:
            identity = Identity(namespace, service_account, subject)
        except ValueError as exc:
            raise TokenFileError(f"{where}: {exc}", rule="token-file") from exc
        entries.append(_Entry(digest, identity))
    return tuple(entries)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class BootstrapTokens:
    """The token checker over a bootstrap file (see the module docstring).

    Reading the file at construction raises :class:`TokenFileError`: a service must not start
    with a broken file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._entries: tuple[_Entry, ...] = ()
        self._load(self._stat_or_raise())

    async def check(self, token: str) -> Identity:
        self._reload_if_changed()
        presented = token_digest(token)
        found: Identity | None = None
        for entry in self._entries:  # no early exit: every entry is compared
            if hmac.compare_digest(entry.digest, presented) and found is None:
                found = entry.identity
        if found is None:
            raise TokenRejected("unknown bootstrap token")
        return found

    def __len__(self) -> int:
        return len(self._entries)

    def _stat_or_raise(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise TokenFileError(
                f"{self.path}: cannot read: {exc.strerror}", rule="unreadable"
            ) from exc
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self, stamp: tuple[int, int, int]) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenFileError(f"{self.path}: cannot read: {exc}", rule="unreadable") from exc
        self._entries = parse_token_file(text, source=str(self.path))
        self._stamp = stamp

    def _reload_if_changed(self) -> None:
        try:
            stamp = self._stat_or_raise()
        except TokenFileError as exc:
            stamp = (0, 0, 0)  # a missing file is one more change, logged once
            error: TokenFileError | None = exc
        else:
            if stamp == self._stamp:
                return
            try:
                self._load(stamp)
            except TokenFileError as exc:
                error = exc
            else:
                log.info("bootstrap tokens reloaded from %s (%d tokens)", self.path, len(self))
                return
        if stamp != self._stamp:
            log.error("bootstrap tokens: %s; keeping the %d tokens loaded before", error, len(self))
            self._stamp = stamp  # log once per change, not on every request
