"""Key generation, key files (mode 0600 from creation) and passphrase encryption."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pki.errors import KeyFileError
from pki.files import write_file
from pki.keys import (
    KeyType,
    generate_key,
    private_key_from_pem,
    private_key_to_pem,
    read_passphrase_file,
    read_private_key,
    write_private_key,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("key_type", "cls", "size"),
    [
        (KeyType.EC_P256, ec.EllipticCurvePrivateKey, 256),
        (KeyType.RSA_2048, rsa.RSAPrivateKey, 2048),
        (KeyType.RSA_3072, rsa.RSAPrivateKey, 3072),
    ],
)
def test_generated_keys_have_the_requested_type(key_type: KeyType, cls: type, size: int) -> None:
    key = generate_key(key_type)

    assert isinstance(key, cls)
    assert key.key_size == size


def test_default_key_is_ec_p256() -> None:
    key = generate_key()

    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)


def test_key_file_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_key(tmp_path / "key.pem", generate_key())
    finally:
        os.umask(old)

    assert _mode(tmp_path / "key.pem") == 0o600


def test_key_file_replacing_a_world_readable_file_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    write_file(path, b"old", mode=0o644)

    write_private_key(path, generate_key())

    assert _mode(path) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]  # no temporary file left


def test_files_are_created_with_their_mode_not_chmodded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("chmod after writing")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)

    write_private_key(tmp_path / "key.pem", generate_key())

    assert _mode(tmp_path / "key.pem") == 0o600


@pytest.mark.parametrize("key_type", [KeyType.EC_P256, KeyType.RSA_2048])
def test_passphrase_round_trip(tmp_path: Path, key_type: KeyType) -> None:
    key = generate_key(key_type)
    path = tmp_path / "key.pem"

    write_private_key(path, key, b"correct horse")

    assert b"ENCRYPTED" in path.read_bytes()
    assert _mode(path) == 0o600
    loaded = read_private_key(path, b"correct horse")
    assert loaded.public_key() == key.public_key()


@pytest.mark.parametrize(
    ("write_with", "read_with", "rule"),
    [
        (b"secret", None, "passphrase-needed"),
        (b"secret", b"wrong", "passphrase-wrong"),
        (None, b"secret", "passphrase-unexpected"),
    ],
)
def test_passphrase_mismatches_are_clear_errors(
    tmp_path: Path, write_with: bytes | None, read_with: bytes | None, rule: str
) -> None:
    path = tmp_path / "key.pem"
    write_private_key(path, generate_key(), write_with)

    with pytest.raises(KeyFileError) as caught:
        read_private_key(path, read_with)

    assert caught.value.rule == rule
    assert str(path) in str(caught.value)


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(KeyFileError, match="empty"):
        private_key_to_pem(generate_key(), b"")


@pytest.mark.parametrize(
    "data",
    [b"", b"not pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
)
def test_garbage_is_not_a_key(data: bytes) -> None:
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        private_key_from_pem(data)


def test_unsupported_curve_is_refused() -> None:
    pem = private_key_to_pem(ec.generate_private_key(ec.SECP384R1()))

    with pytest.raises(KeyFileError, match="P-256"):
        private_key_from_pem(pem)


def test_missing_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        read_private_key(tmp_path / "absent.pem")


def test_passphrase_file_first_line_without_newline(tmp_path: Path) -> None:
    (tmp_path / "pass").write_bytes(b"s3cret\r\n")
    (tmp_path / "empty").write_bytes(b"\n")

    assert read_passphrase_file(tmp_path / "pass") == b"s3cret"
    with pytest.raises(KeyFileError, match="empty"):
        read_passphrase_file(tmp_path / "empty")
