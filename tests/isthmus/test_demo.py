"""The demo's preparation and command line: the example plus the Secret the demo generates
compile into the snapshot the demo promises (the multi-cluster demo is in
``test_demo_clusters.py``)."""

from __future__ import annotations

from pathlib import Path

from gateway.config.compile import load_snapshot
from isthmus.demo import DemoOptions, prepare_runtime

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ingress"


def test_example_with_generated_secret_compiles(tmp_path: Path) -> None:
    prepared = prepare_runtime(DemoOptions(example_dir=EXAMPLE, runtime_dir=tmp_path / "run"))
    snapshot = load_snapshot(prepared.config_dir)
    protocols = {p.port: p.protocol for p in snapshot.ports}
    assert protocols == {8080: "HTTP", 8443: "HTTPS"}
    https = next(p for p in snapshot.ports if p.protocol == "HTTPS")
    certs = [c for lst in https.listeners for c in lst.certificates]
    assert certs and "BEGIN CERTIFICATE" in certs[0].cert_pem
    names = {c.name for c in snapshot.clusters}
    assert any("shop-v1" in n for n in names) and any("shop-v2" in n for n in names)
    # The route serves both listeners; its weighted rule splits 80/20 on each.
    splits = {
        tuple(sorted(b.weight for b in rule.backends))
        for p in snapshot.ports
        for lst in p.listeners
        for r in lst.http_routes
        for rule in r.rules
        if len(rule.backends) > 1
    }
    assert splits == {(20, 80)}
    assert prepared.ca_path is not None and prepared.ca_path.read_text().startswith("-----BEGIN")
