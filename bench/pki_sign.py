"""CSR signings per second on one core: ``python -m bench.pki_sign --ca DIR --duration S``.

:mod:`bench.pki_bench` runs this pinned to the proxy core. It reads the cluster CA from a
``cacerts`` directory, makes ``--csrs`` EC P-256 CSRs (each with its own key and SPIFFE ID)
before the clock starts, then for ``--duration`` seconds does what the CA service does with
each request body's CSR: parse the PEM (:func:`pki.csr.load_csr`), check and sign it
(:meth:`pki.authority.Authority.sign_csr`, which also re-checks the leaf against the
X.509-SVID rules) and encode the certificate as PEM. Prints one JSON object:
``{"signings", "elapsed_s", "cpu_s", "per_s", "per_cpu_s"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from pki.cacerts import read_cacerts
from pki.csr import csr_to_pem, load_csr, make_csr
from pki.keys import generate_key
from pki.spiffe import workload_id


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pki_sign")
    p.add_argument("--ca", type=Path, required=True, help="a cacerts directory")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--csrs", type=int, default=256, help="distinct CSRs to cycle through")
    args = p.parse_args(argv)
    authority = read_cacerts(args.ca).authority
    pems = [
        csr_to_pem(make_csr(generate_key(), workload_id(authority.trust_domain, "bench", f"w{i}")))
        for i in range(args.csrs)
    ]

    def sign(pem: bytes) -> None:
        cert, _ = authority.sign_csr(load_csr(pem))
        cert.public_bytes(serialization.Encoding.PEM)

    warm_end = time.monotonic() + args.warmup
    i = 0
    while time.monotonic() < warm_end:
        sign(pems[i % len(pems)])
        i += 1
    count = 0
    cpu0 = time.process_time()
    t0 = time.monotonic()
    end = t0 + args.duration
    while True:
        for pem in pems[count % len(pems) : count % len(pems) + 16]:
            sign(pem)
            count += 1
        if time.monotonic() >= end:
            break
    elapsed = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    print(
        json.dumps(
            {
                "signings": count,
                "elapsed_s": round(elapsed, 3),
                "cpu_s": round(cpu, 3),
                "per_s": round(count / elapsed, 1),
                "per_cpu_s": round(count / cpu, 1) if cpu > 0 else None,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
