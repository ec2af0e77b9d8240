"""``isthmus pki`` end to end through ``isthmus.cli.main``, in temporary directories.

Covers the files and modes each command writes, Istio's ``cacerts`` layout and its Secret, the
workload certificate verifying against the bundle, root rotation, and the errors users see.
"""

from __future__ import annotations

import base64
import stat
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from isthmus.cli import main
from pki.bundle import read_bundle
from pki.errors import ChainError
from pki.keys import read_private_key
from pki.pem import load_certificate, load_certificates
from pki.verify import verify_svid

TD = "mesh.example"
WEB = f"spiffe://{TD}/ns/shop/sa/web"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _run(*argv: str | Path) -> int:
    return main(["pki", *map(str, argv)])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    assert _run("init-root", "--trust-domain", TD, "--out", tmp_path / "root") == 0
    return tmp_path / "root"


@pytest.fixture
def east(tmp_path: Path, root: Path) -> Path:
    out = tmp_path / "east"
    assert _run("issue-intermediate", "--root", root, "--cluster", "east", "--out", out) == 0
    return out


def test_init_root_writes_a_root_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    assert _run("init-root", "--trust-domain", "Mesh.Example", "--out", root) == 0

    assert _mode(root) == 0o700
    assert _mode(root / "roots/1/root-key.pem") == 0o600
    key = read_private_key(root / "roots/1/root-key.pem")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    cert = load_certificate((root / "root-cert.pem").read_bytes())
    assert cert.public_key() == key.public_key()
    assert read_bundle(root / "bundle.pem").roots == (cert,)
    assert "trust domain mesh.example" in capsys.readouterr().out


def test_init_root_refuses_to_overwrite_a_root(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (root / "roots/1/root-key.pem").read_bytes()

    assert _run("init-root", "--trust-domain", TD, "--out", root) == 1

    assert "already holds a root" in capsys.readouterr().err
    assert (root / "roots/1/root-key.pem").read_bytes() == before


def test_init_root_rsa_with_an_encrypted_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pass").write_text("hunter2\n")
    out = tmp_path / "root"
    assert _run("init-root", "--trust-domain", TD, "--out", out, "--key-type", "rsa",
                "--rsa-bits", "2048", "--passphrase-file", tmp_path / "pass") == 0  # fmt: skip

    key_pem = (out / "roots/1/root-key.pem").read_bytes()
    assert b"ENCRYPTED" in key_pem
    assert isinstance(read_private_key(out / "roots/1/root-key.pem", b"hunter2"), rsa.RSAPrivateKey)

    cacerts = tmp_path / "east"
    assert _run("issue-intermediate", "--root", out, "--cluster", "east", "--out", cacerts) == 1
    assert "encrypted: pass --passphrase-file" in capsys.readouterr().err
    assert not cacerts.exists()
    assert _run("issue-intermediate", "--root", out, "--cluster", "east", "--out", cacerts,
                "--passphrase-file", tmp_path / "pass") == 0  # fmt: skip


def test_bad_trust_domain_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("init-root", "--trust-domain", "bad domain", "--out", tmp_path / "r") == 1

    assert "trust domain may only hold" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cacerts_layout(root: Path, east: Path) -> None:
    assert sorted(p.name for p in east.iterdir()) == [
        "ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem",
    ]  # fmt: skip
    assert _mode(east / "ca-key.pem") == 0o600
    ca_cert = load_certificate((east / "ca-cert.pem").read_bytes())
    root_cert = load_certificate((root / "root-cert.pem").read_bytes())
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca_cert.subject.rfc4514_string() == "CN=east,OU=Intermediate CA,O=Isthmus"
    assert read_private_key(east / "ca-key.pem").public_key() == ca_cert.public_key()
    assert load_certificates((east / "cert-chain.pem").read_bytes()) == [ca_cert, root_cert]
    assert load_certificates((east / "root-cert.pem").read_bytes()) == [root_cert]
    ca_cert.verify_directly_issued_by(root_cert)


def test_k8s_secret_is_printed_on_stdout(
    tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "west"
    assert _run("issue-intermediate", "--root", root, "--cluster", "west", "--out", out,
                "--k8s-secret", "--namespace", "mesh-system") == 0  # fmt: skip
    captured = capsys.readouterr()

    secret = yaml.safe_load(captured.out)
    assert secret["apiVersion"] == "v1"
    assert secret["kind"] == "Secret"
    assert secret["type"] == "Opaque"
    assert secret["metadata"] == {"name": "cacerts", "namespace": "mesh-system"}
    assert sorted(secret["data"]) == [
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    ]
    for name, value in secret["data"].items():
        assert base64.b64decode(value) == (out / name).read_bytes()
    assert "intermediate for cluster west" in captured.err  # the report stays off stdout


def test_issue_writes_a_verifiable_svid(
    tmp_path: Path, east: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "web"
    assert _run("issue", "--ca", east, "--spiffe-id", WEB, "--out", out, "--ttl", "2h") == 0

    assert sorted(p.name for p in out.iterdir()) == [
        "bundle.pem",
        "cert.pem",
        "chain.pem",
        "key.pem",
    ]
    assert _mode(out / "key.pem") == 0o600
    cert = load_certificate((out / "cert.pem").read_bytes())
    chain = load_certificates((out / "chain.pem").read_bytes())
    assert chain[0] == cert and len(chain) == 3
    assert cert.public_key() == read_private_key(out / "key.pem").public_key()
    # 2 h from now, starting 5 min in the past for clock skew.
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(hours=2, minutes=5)
    assert str(verify_svid(chain, read_bundle(out / "bundle.pem"), trust_domain=TD)) == WEB
    assert WEB in capsys.readouterr().out


def test_issue_from_a_root_directory(tmp_path: Path, root: Path) -> None:
    out = tmp_path / "web"
    assert _run("issue", "--ca", root, "--spiffe-id", WEB, "--out", out, "--dns", "web.local") == 0

    chain = load_certificates((out / "chain.pem").read_bytes())
    assert len(chain) == 2
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["web.local"]
    assert str(verify_svid(chain, read_bundle(out / "bundle.pem"))) == WEB


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--spiffe-id", "spiffe://mesh.example/a/"], "must not end with '/'"),
        (["--spiffe-id", "spiffe://other.example/a"], "not in this CA's trust domain"),
        (["--spiffe-id", WEB, "--ttl", "31d"], "above the maximum 30d"),
    ],
)
def test_issue_refusals(
    tmp_path: Path, east: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert _run("issue", "--ca", east, "--out", tmp_path / "w", *argv) == 1

    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_issue_with_an_unknown_ca_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("issue", "--ca", tmp_path, "--spiffe-id", WEB, "--out", tmp_path / "w") == 1

    assert "neither a cacerts directory nor a root directory" in capsys.readouterr().err


def test_issue_refuses_a_damaged_cacerts(
    tmp_path: Path, east: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (east / "cert-chain.pem").write_text("garbage")

    assert _run("issue", "--ca", east, "--spiffe-id", WEB, "--out", tmp_path / "w") == 1

    assert "cert-chain.pem: no PEM certificate found" in capsys.readouterr().err


@pytest.mark.parametrize("ttl", ["0h", "24", "1x", "-1h", "h"])
def test_bad_durations_are_usage_errors(tmp_path: Path, east: Path, ttl: str) -> None:
    with pytest.raises(SystemExit) as caught:
        _run("issue", "--ca", east, "--spiffe-id", WEB, "--out", tmp_path / "w", "--ttl", ttl)

    assert caught.value.code == 2


def test_rotate_root_through_the_command(
    tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old_leaf = tmp_path / "old"
    assert (
        _run("issue-intermediate", "--root", root, "--cluster", "east", "--out", tmp_path / "e")
        == 0
    )
    assert _run("issue", "--ca", tmp_path / "e", "--spiffe-id", WEB, "--out", old_leaf) == 0
    old_chain = load_certificates((old_leaf / "chain.pem").read_bytes())

    assert _run("rotate-root", "retire", "--root", root) == 1
    assert "no rotation is in progress" in capsys.readouterr().err

    assert _run("rotate-root", "stage", "--root", root) == 0
    assert "phase staged" in capsys.readouterr().out
    # Rolling the bundle out: the re-issued cacerts carries both roots.
    assert (
        _run("issue-intermediate", "--root", root, "--cluster", "east", "--out", tmp_path / "e")
        == 0
    )
    assert len(load_certificates((tmp_path / "e/root-cert.pem").read_bytes())) == 2
    assert "holds 2 roots" in capsys.readouterr().out

    assert _run("rotate-root", "promote", "--root", root) == 0
    assert _run("rotate-root", "promote", "--root", root) == 0
    assert "already done" in capsys.readouterr().out
    assert (
        _run("issue-intermediate", "--root", root, "--cluster", "east", "--out", tmp_path / "e")
        == 0
    )
    assert _run("issue", "--ca", tmp_path / "e", "--spiffe-id", WEB, "--out", tmp_path / "new") == 0
    new_chain = load_certificates((tmp_path / "new/chain.pem").read_bytes())
    both = read_bundle(tmp_path / "e/root-cert.pem")
    assert str(verify_svid(old_chain, both)) == WEB
    assert str(verify_svid(new_chain, both)) == WEB

    assert _run("rotate-root", "retire", "--root", root) == 0
    assert (
        _run("issue-intermediate", "--root", root, "--cluster", "east", "--out", tmp_path / "e")
        == 0
    )
    only_new = read_bundle(tmp_path / "e/root-cert.pem")
    assert len(only_new) == 1
    assert str(verify_svid(new_chain, only_new)) == WEB
    with pytest.raises(ChainError, match="no valid path"):
        verify_svid(old_chain, only_new)


def test_pki_needs_a_sub_command() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["pki"])

    assert caught.value.code == 2
