"""The root directory that ``isthmus pki init-root`` makes and the other commands read.

Called by the ``isthmus pki`` commands and :mod:`pki.rotation`. Layout::

    DIR/state.json              trust domain, key type, rotation phase, which roots are used
    DIR/roots/<n>/root-cert.pem root generation n (1 from init-root, n+1 from each stage)
    DIR/roots/<n>/root-key.pem  its key, mode 0600, encrypted when a passphrase was given
    DIR/root-cert.pem           the signing root's certificate (a copy, for operators)
    DIR/bundle.pem              the trust bundle: every root verifiers must trust right now

``state.json`` is the only source of truth; ``root-cert.pem`` and ``bundle.pem`` are derived
from it by :meth:`RootDir.publish`, which every command runs again, so a step interrupted between
writing the state and publishing is repaired by running it again. Each key exists once on disk.
"""

from __future__ import annotations

import datetime
import enum
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography import x509

from pki.authority import DEFAULT_ROOT_TTL, Authority, create_root
from pki.bundle import TrustBundle
from pki.errors import LayoutError, PkiError
from pki.files import make_private_dir, write_file
from pki.keys import KeyType, generate_key, read_private_key, write_private_key
from pki.pem import certificates_to_pem, load_certificate
from pki.spiffe import parse_trust_domain

STATE_FILE = "state.json"
ROOTS = "roots"
ROOT_CERT = "root-cert.pem"
ROOT_KEY = "root-key.pem"
BUNDLE = "bundle.pem"
_VERSION = 1
_MAX_COMMON_NAME = 64


class Phase(enum.Enum):
    """Where the root directory is in the rotation lifecycle (see :mod:`pki.rotation`)."""

    ACTIVE = "active"  # one root, as init-root left it
    STAGED = "staged"  # a new root is trusted, the old one still signs
    PROMOTED = "promoted"  # the new root signs, the old one is still trusted
    RETIRED = "retired"  # the old root is no longer trusted; one root again


@dataclass(frozen=True, slots=True)
class RootState:
    """The content of ``state.json``."""

    trust_domain: str
    key_type: KeyType
    encrypted: bool
    phase: Phase
    signing: int  # generation of the root that signs intermediates
    trusted: tuple[int, ...]  # generations in the trust bundle, oldest first

    def to_json(self) -> str:
        document = {
            "version": _VERSION,
            "trust_domain": self.trust_domain,
            "key_type": self.key_type.value,
            "encrypted": self.encrypted,
            "phase": self.phase.value,
            "signing": self.signing,
            "trusted": list(self.trusted),
        }
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str) -> RootState:
        try:
            document: Any = json.loads(text)
            if not isinstance(document, dict) or document.get("version") != _VERSION:
                raise ValueError(f"expected an object with version {_VERSION}")
            trusted = document["trusted"]
            if not isinstance(trusted, list) or not all(isinstance(n, int) for n in trusted):
                raise ValueError("'trusted' must be a list of generations")
            state = cls(
                trust_domain=parse_trust_domain(str(document["trust_domain"])),
                key_type=KeyType(document["key_type"]),
                encrypted=bool(document["encrypted"]),
                phase=Phase(document["phase"]),
                signing=int(document["signing"]),
                trusted=tuple(trusted),
            )
        except (ValueError, KeyError, TypeError, PkiError) as exc:
            raise LayoutError(f"{source}: damaged state file ({exc})", rule="state") from exc
        if state.signing not in state.trusted:
            raise LayoutError(f"{source}: the signing root is not trusted", rule="state")
        return state

    def with_changes(self, **changes: Any) -> RootState:
        return replace(self, **changes)


class RootDir:
    """A root directory on disk. Methods read and write its files; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def state_path(self) -> Path:
        return self.path / STATE_FILE

    def exists(self) -> bool:
        return self.state_path.is_file()

    def load_state(self) -> RootState:
        if not self.exists():
            raise LayoutError(
                f"{self.path}: not a root directory (no {STATE_FILE}; make one with init-root)",
                rule="root-missing",
            )
        try:
            text = self.state_path.read_text()
        except OSError as exc:
            raise LayoutError(
                f"{self.state_path}: cannot read: {exc.strerror}", rule="unreadable"
            ) from exc
        return RootState.from_json(text, source=str(self.state_path))

    def save_state(self, state: RootState) -> None:
        write_file(self.state_path, state.to_json().encode())

    def generation_dir(self, generation: int) -> Path:
        return self.path / ROOTS / str(generation)

    def new_root(
        self,
        generation: int,
        trust_domain: str,
        key_type: KeyType,
        passphrase: bytes | None,
        *,
        ttl: datetime.timedelta = DEFAULT_ROOT_TTL,
        now: datetime.datetime | None = None,
    ) -> Authority:
        """Make root ``generation`` and write its certificate and key (overwriting leftovers
        of an interrupted step: a root is published only once ``state.json`` names it)."""
        name = f"{trust_domain} root CA {generation}"
        if len(name) > _MAX_COMMON_NAME:
            name = f"Isthmus root CA {generation}"
        authority = create_root(
            generate_key(key_type), trust_domain, common_name=name, ttl=ttl, now=now
        )
        where = self.generation_dir(generation)
        make_private_dir(where.parent)
        make_private_dir(where)
        write_private_key(where / ROOT_KEY, authority.key, passphrase)
        write_file(where / ROOT_CERT, certificates_to_pem([authority.cert]))
        return authority

    def root_cert(self, generation: int) -> x509.Certificate:
        path = self.generation_dir(generation) / ROOT_CERT
        try:
            return load_certificate(path.read_bytes(), source=str(path))
        except OSError as exc:
            raise LayoutError(f"{path}: cannot read: {exc.strerror}", rule="unreadable") from exc
        except PkiError as exc:
            raise LayoutError(str(exc), rule=exc.rule) from exc

    def authority(self, generation: int, state: RootState, passphrase: bytes | None) -> Authority:
        """Root ``generation`` with its key, ready to sign."""
        if state.encrypted and passphrase is None:
            raise LayoutError(
                f"{self.path}: the root key is encrypted: pass --passphrase-file",
                rule="passphrase-needed",
            )
        key = read_private_key(
            self.generation_dir(generation) / ROOT_KEY, passphrase if state.encrypted else None
        )
        try:
            return Authority.load(self.root_cert(generation), key)
        except PkiError as exc:
            raise LayoutError(f"{self.generation_dir(generation)}: {exc}", rule=exc.rule) from exc

    def signing_authority(self, passphrase: bytes | None = None) -> tuple[Authority, RootState]:
        state = self.load_state()
        return self.authority(state.signing, state, passphrase), state

    def bundle(self, state: RootState) -> TrustBundle:
        return TrustBundle.of(self.root_cert(generation) for generation in state.trusted)

    def publish(self, state: RootState) -> TrustBundle:
        """Write the derived files (signing root copy, trust bundle) from ``state``."""
        bundle = self.bundle(state)
        write_file(self.path / ROOT_CERT, certificates_to_pem([self.root_cert(state.signing)]))
        write_file(self.path / BUNDLE, bundle.to_pem())
        return bundle


def init_root(
    path: Path,
    trust_domain: str,
    *,
    key_type: KeyType = KeyType.EC_P256,
    passphrase: bytes | None = None,
    ttl: datetime.timedelta = DEFAULT_ROOT_TTL,
    now: datetime.datetime | None = None,
) -> RootState:
    """Make a new root directory at ``path`` (which may exist, but must not hold a root)."""
    trust_domain = parse_trust_domain(trust_domain)
    root_dir = RootDir(path)
    if root_dir.exists():
        raise LayoutError(
            f"{path}: already holds a root ({STATE_FILE} exists); refusing to overwrite it",
            rule="root-exists",
        )
    make_private_dir(path)
    root_dir.new_root(1, trust_domain, key_type, passphrase, ttl=ttl, now=now)
    state = RootState(
        trust_domain=trust_domain,
        key_type=key_type,
        encrypted=passphrase is not None,
        phase=Phase.ACTIVE,
        signing=1,
        trusted=(1,),
    )
    root_dir.save_state(state)
    root_dir.publish(state)
    return state
