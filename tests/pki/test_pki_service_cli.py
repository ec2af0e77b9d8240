"""``isthmus pki serve`` as a process: it prints its address, issues over TLS, writes the audit
file, and exits 0 on SIGTERM; bad arguments are refused with a clear message."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import sys
from pathlib import Path

import httpx
import pytest

from isthmus.cli import main
from pki.csr import csr_to_pem, make_csr
from pki.keys import generate_key
from pki.spiffe import parse_spiffe_id

TD = "mesh.example"
WEB = f"spiffe://{TD}/ns/shop/sa/web"
TOKEN = "web-token-0123456789abcdef"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def east(tmp_path: Path) -> Path:
    assert main(["pki", "init-root", "--trust-domain", TD, "--out", str(tmp_path / "root")]) == 0
    out = tmp_path / "east"
    argv = ["issue-intermediate", "--root", str(tmp_path / "root"), "--cluster", "east"]
    assert main(["pki", *argv, "--out", str(out)]) == 0
    return out


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(f'"{TOKEN}": {{namespace: shop, serviceAccount: web}}\n')
    return path


async def start(*argv: str | Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "isthmus",
        "pki",
        "serve",
        *map(str, argv),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=REPO,
    )


async def test_serve_prints_its_address_issues_and_stops_on_sigterm(
    east: Path, tokens: Path, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    proc = await start(
        "--ca", east, "--listen", "127.0.0.1:0", "--trust-domain", TD,
        "--bootstrap-tokens", tokens, "--audit-log", audit, "--max-ttl", "2h",
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith(f"isthmus pki serve: CA service for trust domain {TD} on https://")
        url = line.split()[-1]

        bundle = (east / "root-cert.pem").read_text()
        csr = csr_to_pem(make_csr(generate_key(), parse_spiffe_id(WEB))).decode()
        context = ssl.create_default_context(cadata=bundle)
        async with httpx.AsyncClient(verify=context, trust_env=False) as client:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            ok = await client.post(f"{url}/v1/certificates", json={"csr": csr}, headers=headers)
            too_long = await client.post(
                f"{url}/v1/certificates", json={"csr": csr, "ttl": "3h"}, headers=headers
            )
        assert ok.status_code == 200
        assert ok.json()["spiffeId"] == WEB
        assert too_long.status_code == 400
        assert too_long.json()["error"] == "ttl-too-long"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0
    lines = [json.loads(x) for x in audit.read_text().splitlines()]
    assert [(x["outcome"], x["status"]) for x in lines] == [("issued", 200), ("refused", 400)]
    assert audit.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("extra", "status", "message"),
    [
        (["--trust-domain", "other.example"], 1, "the CA is for trust domain mesh.example"),
        (["--trust-domain", TD, "--max-ttl", "31d"], 1, "--max-ttl: at most 30d"),
        (["--trust-domain", TD, "--listen", "nowhere"], 2, "expected HOST:PORT"),
    ],
)
def test_serve_refuses_bad_arguments(
    east: Path,
    tokens: Path,
    extra: list[str],
    status: int,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["pki", "serve", "--ca", str(east), "--listen", "127.0.0.1:0"]
    argv += ["--bootstrap-tokens", str(tokens), *extra]
    if status == 2:
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
    else:
        assert main(argv) == status
    assert message in capsys.readouterr().err


def test_serve_needs_exactly_one_token_checker(
    east: Path, tokens: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["pki", "serve", "--ca", str(east), "--listen", "127.0.0.1:0", "--trust-domain", TD]
    for extra in ([], ["--bootstrap-tokens", str(tokens), "--in-cluster"]):
        with pytest.raises(SystemExit) as exited:
            main([*base, *extra])
        assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "one of the arguments --bootstrap-tokens --kubeconfig --in-cluster is required" in err
    assert "not allowed with argument" in err


def test_serve_refuses_a_broken_token_file(
    east: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('"short": {namespace: shop, serviceAccount: web}\n')
    argv = ["pki", "serve", "--ca", str(east), "--listen", "127.0.0.1:0", "--trust-domain", TD]
    assert main([*argv, "--bootstrap-tokens", str(bad)]) == 1
    assert "tokens must have at least 16 characters" in capsys.readouterr().err
