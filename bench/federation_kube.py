"""The federation bench's Kubernetes side: one API double per cluster, in one helper process.

Started by ``bench.federation_bench`` as ``python -m bench.federation_kube --clusters
east,west,north --services 10000 --extras K --dir TMP`` (pinned to the load core). It uses
the Kubernetes API double of the test suite (``tests.support.kube_api``; the bench imports
it from ``tests/``, so it must run from a repository checkout): a protocol-faithful
kube-apiserver peer, which the controllers reach through the official ``kubernetes``
client, list then watch, exactly as they would reach a real API server. The doubles are
filled before the controllers start, and a kubeconfig per cluster is written to
``TMP/<cluster>.kubeconfig``.

Protocol (JSON lines): once ready it prints ``{"ready": true, "objects": N, ...}`` on stdout;
then each line on stdin is a command ``{"op": "apply"|"delete", "cluster", "obj"}``, answered
on stdout with ``{"ok": true, "t": T}`` where ``T`` is ``time.monotonic()`` (a clock shared by
every process of the machine) taken just before the write. End of stdin: stop.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.federation_data import cluster_objects, shares
from tests.support.kube_api import KubeApiDouble


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _command(doubles: dict[str, KubeApiDouble], cmd: dict[str, Any]) -> dict[str, Any]:
    kube = doubles[cmd["cluster"]]
    obj = cmd["obj"]
    t = time.monotonic()
    if cmd["op"] == "apply":
        kube.apply(obj)
    elif cmd["op"] == "delete":
        meta = obj["metadata"]
        kube.delete(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace", "default"))
    else:
        raise ValueError(f"unknown op {cmd['op']!r}")
    return {"ok": True, "t": t}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.federation_kube")
    p.add_argument("--clusters", required=True)
    p.add_argument("--services", type=int, required=True)
    p.add_argument("--extras", type=int, default=0)
    p.add_argument("--dir", type=Path, required=True)
    args = p.parse_args(argv)
    clusters = [c for c in args.clusters.split(",") if c]
    counts = shares(args.services, len(clusters))
    doubles: dict[str, KubeApiDouble] = {}
    t0 = time.monotonic()
    total = 0
    try:
        for number, (name, count) in enumerate(zip(clusters, counts, strict=True)):
            kube = KubeApiDouble()
            for obj in cluster_objects(name, number, count, args.extras):
                kube.create(obj)
                total += 1
            doubles[name] = kube.start()
            kube.write_kubeconfig(args.dir / f"{name}.kubeconfig")
        _reply({"ready": True, "objects": total, "counts": counts,
                "fill_s": round(time.monotonic() - t0, 3),
                "urls": {n: d.url for n, d in doubles.items()}})  # fmt: skip
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                _reply(_command(doubles, json.loads(line)))
            except Exception as exc:  # report, keep serving
                _reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    except KeyboardInterrupt:
        pass
    finally:
        for kube in doubles.values():
            kube.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
