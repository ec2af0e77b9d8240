"""Private keys: generation (EC P-256 by default, RSA 2048/3072), PEM encoding, key files.

Called by :mod:`pki.authority` (CA keys), the ``isthmus pki`` commands and the credential
manager (a proxy's own key, made locally). Key files are PKCS#8 PEM, written with mode 0600
through :mod:`pki.files`, optionally encrypted with a passphrase (the best encryption the
``cryptography`` backend offers).
"""

from __future__ import annotations

import enum
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pki.errors import KeyFileError
from pki.files import write_private_file

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_RSA_EXPONENT = 65537
# A passphrase file holds one line; longer content is almost surely the wrong file.
_MAX_PASSPHRASE_BYTES = 1024


class KeyType(enum.Enum):
    """The key algorithms Isthmus issues for. The value is the name used on the command line."""

    EC_P256 = "ec"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"

    @classmethod
    def from_cli(cls, key_type: str, rsa_bits: int = 3072) -> KeyType:
        """``--key-type ec|rsa`` plus ``--rsa-bits`` to a :class:`KeyType`."""
        if key_type == "ec":
            return cls.EC_P256
        if key_type == "rsa":
            if rsa_bits == 2048:
                return cls.RSA_2048
            if rsa_bits == 3072:
                return cls.RSA_3072
            raise ValueError(f"--rsa-bits: 2048 or 3072, got {rsa_bits}")
        raise ValueError(f"--key-type: 'ec' or 'rsa', got {key_type!r}")


def generate_key(key_type: KeyType = KeyType.EC_P256) -> PrivateKey:
    """A new private key of ``key_type``."""
    if key_type is KeyType.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    bits = 2048 if key_type is KeyType.RSA_2048 else 3072
    return rsa.generate_private_key(public_exponent=_RSA_EXPONENT, key_size=bits)


def check_public_key(public_key: object) -> PublicKey:
    """Return ``public_key`` if Isthmus issues for its type (P-256, RSA 2048..4096), else raise.

    Raises ``ValueError``; callers turn it into their own error type.
    """
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise ValueError(f"EC keys must use P-256, not {public_key.curve.name}")
        return public_key
    if isinstance(public_key, rsa.RSAPublicKey):
        if not 2048 <= public_key.key_size <= 4096:
            raise ValueError(f"RSA keys must have 2048 to 4096 bits, not {public_key.key_size}")
        return public_key
    raise ValueError(f"unsupported key type {type(public_key).__name__}: use EC P-256 or RSA")


def private_key_to_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM; encrypted when ``passphrase`` is given (it must not be empty)."""
    encryption: serialization.KeySerializationEncryption
    if passphrase is None:
        encryption = serialization.NoEncryption()
    else:
        if not passphrase:
            raise KeyFileError("the passphrase is empty", rule="passphrase")
        encryption = serialization.BestAvailableEncryption(passphrase)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def private_key_from_pem(
    data: bytes, passphrase: bytes | None = None, *, source: str = "key"
) -> PrivateKey:
    """Load a PEM private key; raise :class:`KeyFileError` saying what is wrong.

    ``source`` names the key in messages (usually its file name).
    """
    encrypted = b"BEGIN ENCRYPTED PRIVATE KEY" in data or b"Proc-Type: 4,ENCRYPTED" in data
    if encrypted and passphrase is None:
        raise KeyFileError(
            f"{source}: the key is encrypted: a passphrase is needed", rule="passphrase-needed"
        )
    if not encrypted and passphrase is not None:
        raise KeyFileError(
            f"{source}: the key is not encrypted but a passphrase was given",
            rule="passphrase-unexpected",
        )
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except ValueError as exc:
        if encrypted:
            raise KeyFileError(
                f"{source}: wrong passphrase, or the key is damaged", rule="passphrase-wrong"
            ) from exc
        raise KeyFileError(f"{source}: not a PEM private key ({exc})", rule="not-a-key") from exc
    except TypeError as exc:
        raise KeyFileError(f"{source}: {exc}", rule="passphrase") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KeyFileError(f"{source}: unsupported key type {type(key).__name__}", rule="key-type")
    try:
        check_public_key(key.public_key())
    except ValueError as exc:
        raise KeyFileError(f"{source}: {exc}", rule="key-type") from exc
    return key


def write_private_key(path: Path, key: PrivateKey, passphrase: bytes | None = None) -> None:
    """Write ``key`` to ``path`` as PKCS#8 PEM, created with mode 0600, atomically."""
    write_private_file(path, private_key_to_pem(key, passphrase))


def read_private_key(path: Path, passphrase: bytes | None = None) -> PrivateKey:
    """Read a key written by :func:`write_private_key` (or any PEM P-256/RSA key)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror}", rule="unreadable") from exc
    return private_key_from_pem(data, passphrase, source=str(path))


def read_passphrase_file(path: Path) -> bytes:
    """The passphrase in ``path``: its first line, without the line ending. Must not be empty."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(
            f"{path}: cannot read the passphrase file: {exc.strerror}", rule="unreadable"
        ) from exc
    if len(data) > _MAX_PASSPHRASE_BYTES:
        raise KeyFileError(f"{path}: a passphrase file holds one short line", rule="passphrase")
    passphrase = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not passphrase:
        raise KeyFileError(f"{path}: the passphrase is empty", rule="passphrase")
    return passphrase
