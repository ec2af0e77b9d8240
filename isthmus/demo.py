"""The single-cluster ingress demo behind ``isthmus demo`` (``make demo``).

:func:`run` prepares a runtime directory (``.demo/``) from an example directory of
Kubernetes YAML (``examples/ingress`` by default), generates the TLS Secrets that the
example's Gateway listeners refer to but that are not committed, starts the echo backends
(:mod:`isthmus.backends`) and the ingress gateway as a child process
(``isthmus gateway run --role ingress``), waits for the gateway's ``/ready``, prints curl
commands to try, and runs until SIGINT or SIGTERM. Then it stops the gateway (SIGTERM, so it
drains) and the backends, and returns an exit code.

The multi-cluster demo (``--clusters N``) is :mod:`isthmus.demo_clusters`;
``isthmus.commands.demo`` chooses.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shlex
import shutil
import signal
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from isthmus.backends import Backend
from isthmus.children import Children
from pki.issue import issue_self_signed_server

DEFAULT_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ingress"

# The example's EndpointSlices point at these; the backends must be where they say.
DEMO_BACKENDS: tuple[tuple[str, int], ...] = (("shop-v1", 9001), ("shop-v2", 9002))
_LOOPBACK = "127.0.0.1"
_CERT_DAYS = 30


class DemoError(Exception):
    """The demo cannot start; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``isthmus demo`` runs. Paths are used as given (relative to the working dir)."""

    example_dir: Path = DEFAULT_EXAMPLE
    runtime_dir: Path = Path(".demo")
    admin_host: str = _LOOPBACK
    admin_port: int = 15000
    backends: tuple[tuple[str, int], ...] = DEMO_BACKENDS
    # The command that starts Isthmus; ``gateway run ...`` is appended. Tests swap it.
    isthmus_command: tuple[str, ...] = (sys.executable, "-m", "isthmus")
    ready_timeout_s: float = 30.0
    # How long the gateway gets to drain after SIGTERM before it is killed.
    stop_timeout_s: float = 15.0


@dataclass(frozen=True, slots=True)
class ListenerInfo:
    """One Gateway listener, as far as the demo needs it."""

    gateway: str
    name: str
    protocol: str
    port: int
    hostname: str | None
    secret_refs: tuple[tuple[str, str], ...] = ()  # (namespace, name) of kubernetes.io/tls


@dataclass(frozen=True, slots=True)
class ExampleSummary:
    """What the example configures that the printed instructions talk about."""

    listeners: tuple[ListenerInfo, ...]
    header_matches: tuple[tuple[str, str], ...] = ()  # (name, value) of exact header matches
    has_weighted_split: bool = False


@dataclass(frozen=True, slots=True)
class _Prepared:
    config_dir: Path
    ca_path: Path | None
    summary: ExampleSummary


# --- reading the example (no I/O beyond the files) ------------------------------------------


def load_documents(example_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every YAML document of every ``*.yaml``/``*.yml`` file in ``example_dir``."""
    if not example_dir.is_dir():
        raise DemoError(
            f"example directory {example_dir} not found; pass --example DIR "
            "(a directory of Kubernetes YAML such as examples/ingress)"
        )
    docs: list[tuple[Path, dict[str, Any]]] = []
    for path in _yaml_files(example_dir):
        try:
            loaded = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as exc:
            raise DemoError(f"{path}: not valid YAML: {exc}") from exc
        for doc in loaded:
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc:
                raise DemoError(f"{path}: every document must be a Kubernetes object with a kind")
            docs.append((path, doc))
    if not docs:
        raise DemoError(f"example directory {example_dir} has no YAML documents")
    return docs


def summarize(docs: Sequence[Mapping[str, Any]]) -> ExampleSummary:
    """The listeners, header matches and weighted splits that the documents declare."""
    listeners: list[ListenerInfo] = []
    headers: list[tuple[str, str]] = []
    weighted = False
    for doc in docs:
        kind = doc.get("kind")
        meta = doc.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        spec = doc.get("spec") or {}
        if kind == "Gateway":
            listeners.extend(_listeners(str(meta.get("name", "")), namespace, spec))
        elif kind == "HTTPRoute":
            for rule in spec.get("rules") or []:
                if len(rule.get("backendRefs") or []) > 1:
                    weighted = True
                for match in rule.get("matches") or []:
                    for header in match.get("headers") or []:
                        if header.get("type", "Exact") == "Exact":
                            headers.append((str(header["name"]), str(header["value"])))
    return ExampleSummary(tuple(listeners), tuple(dict.fromkeys(headers)), weighted)


def _listeners(gateway: str, namespace: str, spec: Mapping[str, Any]) -> Iterator[ListenerInfo]:
    for listener in spec.get("listeners") or []:
        refs: list[tuple[str, str]] = []
        tls = listener.get("tls") or {}
        for ref in tls.get("certificateRefs") or []:
            if ref.get("kind", "Secret") == "Secret" and ref.get("group", "") == "":
                refs.append((str(ref.get("namespace") or namespace), str(ref["name"])))
        yield ListenerInfo(
            gateway=gateway,
            name=str(listener.get("name", "")),
            protocol=str(listener.get("protocol", "")),
            port=int(listener["port"]),
            hostname=listener.get("hostname"),
            secret_refs=tuple(refs),
        )


def missing_tls_secrets(
    docs: Sequence[Mapping[str, Any]], summary: ExampleSummary
) -> dict[tuple[str, str], list[str]]:
    """Secrets the listeners refer to that no document defines, with the names each must
    cover: the hostnames of the listeners using it, then ``localhost`` and 127.0.0.1."""
    defined = {
        (str((d.get("metadata") or {}).get("namespace") or "default"), str(d["metadata"]["name"]))
        for d in docs
        if d.get("kind") == "Secret"
    }
    wanted: dict[tuple[str, str], list[str]] = {}
    for listener in summary.listeners:
        for ref in listener.secret_refs:
            if ref in defined:
                continue
            names = wanted.setdefault(ref, [])
            if listener.hostname and listener.hostname not in names:
                names.append(listener.hostname)
    for names in wanted.values():
        names.extend(n for n in ("localhost", _LOOPBACK) if n not in names)
    return wanted


def _yaml_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


# --- the runtime directory ------------------------------------------------------------------


def write_tls_secret_yaml(
    path: str | os.PathLike[str], name: str, namespace: str, cert_pem: str, key_pem: str
) -> None:
    """Write a ``v1 Secret`` of type ``kubernetes.io/tls`` holding ``cert_pem``/``key_pem``.

    The file holds a private key, so it is created readable by its owner only.
    """
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(cert_pem.encode()).decode("ascii"),
            "tls.key": base64.b64encode(key_pem.encode()).decode("ascii"),
        },
    }
    text = "# Generated by `isthmus demo`; not committed.\n" + yaml.safe_dump(
        secret, sort_keys=False
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def prepare_runtime(options: DemoOptions) -> _Prepared:
    """Lay out ``<runtime>/config`` (the example's YAML plus generated Secrets) and
    ``<runtime>/ca.pem`` (the generated certificates, for ``curl --cacert``)."""
    loaded = load_documents(options.example_dir)
    docs = [doc for _, doc in loaded]
    summary = summarize(docs)
    if not summary.listeners:
        raise DemoError(f"{options.example_dir}: no Gateway with listeners")

    config_dir = options.runtime_dir / "config"
    if config_dir.exists():
        shutil.rmtree(config_dir)  # ours: rebuilt at every start so no stale file lingers
    config_dir.mkdir(parents=True)
    for path in _yaml_files(options.example_dir):
        shutil.copyfile(path, config_dir / path.name)

    ca_parts: list[str] = []
    for (namespace, name), hostnames in sorted(missing_tls_secrets(docs, summary).items()):
        cert_pem, key_pem = issue_self_signed_server(hostnames, days=_CERT_DAYS)
        write_tls_secret_yaml(
            config_dir / f"generated-secret-{namespace}-{name}.yaml",
            name,
            namespace,
            cert_pem,
            key_pem,
        )
        ca_parts.append(cert_pem)
    ca_path: Path | None = None
    if ca_parts:
        ca_path = options.runtime_dir / "ca.pem"
        ca_path.write_text("".join(ca_parts))
    return _Prepared(config_dir, ca_path, summary)


def check_ports_free(host: str, ports: Sequence[int]) -> None:
    """Refuse to start when something (often an earlier demo) already listens on a port."""
    taken: list[int] = []
    for port in ports:
        try:
            socket.create_server((host, port)).close()
        except OSError:
            taken.append(port)
    if taken:
        listed = ", ".join(str(p) for p in taken)
        raise DemoError(f"port(s) {listed} on {host} already in use; is another demo running?")


# --- what to try ----------------------------------------------------------------------------


def instructions(
    summary: ExampleSummary, ca_path: Path | None, admin_host: str, admin_port: int
) -> str:
    """The curl commands printed once the gateway is ready."""
    admin = f"http://{admin_host}:{admin_port}"
    lines = [
        "",
        f"Isthmus ingress demo is ready. Admin: {admin}. Ctrl-C stops everything.",
        "Each backend answers with JSON naming itself and echoing the request it got.",
        "",
    ]
    http = next((li for li in summary.listeners if li.protocol == "HTTP"), None)
    https = next((li for li in summary.listeners if li.protocol == "HTTPS"), None)
    if http is not None:
        base = f"http://{_LOOPBACK}:{http.port}"
        lines += [
            "  # HTTP/1.1",
            f"  curl -i {base}/hello",
            "  # HTTP/2 in cleartext (h2c, prior knowledge)",
            f"  curl -i --http2-prior-knowledge {base}/hello",
        ]
        for name, value in summary.header_matches:
            lines += [
                f"  # the rule that matches the header {name}: {value}",
                f"  curl -i -H {shlex.quote(f'{name}: {value}')} {base}/hello",
            ]
        if summary.has_weighted_split:
            lines += [
                "  # the weighted split, counted over 100 requests",
                f"  for i in $(seq 100); do curl -s {base}/; echo; done"
                ' | grep -o \'"backend":"[^"]*"\' | sort | uniq -c',
            ]
    if https is not None:
        host = (https.hostname or "localhost").replace("*", "www", 1)
        trust = f"--cacert {shlex.quote(str(ca_path))}" if ca_path is not None else "-k"
        lines += [
            "  # HTTPS with HTTP/2 negotiated by ALPN",
            f"  curl -i --http2 --resolve {host}:{https.port}:{_LOOPBACK} {trust}"
            f" https://{host}:{https.port}/hello",
        ]
    lines += [
        "  # Prometheus metrics, and the active configuration snapshot",
        f"  curl -s {admin}/metrics | grep istio_requests_total",
        f"  curl -s {admin}/config",
        "",
    ]
    return "\n".join(lines)


# --- running --------------------------------------------------------------------------------


async def run(options: DemoOptions) -> int:
    """Run the demo until SIGINT or SIGTERM. Returns 0 after a requested stop, 1 when the
    gateway failed. Raises :class:`DemoError` when the demo cannot start."""
    prepared = prepare_runtime(options)
    listener_ports = sorted({li.port for li in prepared.summary.listeners})
    check_ports_free(_LOOPBACK, [*listener_ports, options.admin_port])
    backends = [Backend(name, _LOOPBACK, port) for name, port in options.backends]
    try:
        for backend in backends:
            backend.bind()
    except OSError as exc:
        for backend in backends:
            backend.close()
        raise DemoError(f"cannot listen for the demo backends: {exc}") from exc

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = (signal.SIGINT, signal.SIGTERM)
    for sig in handled:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:
            for backend in backends:
                tg.create_task(backend.serve(), name=f"backend {backend.name}")
            try:
                return await _run_gateway(options, prepared, stop, tg)
            finally:
                for backend in backends:
                    backend.stop()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


async def _run_gateway(
    options: DemoOptions, prepared: _Prepared, stop: asyncio.Event, tg: asyncio.TaskGroup
) -> int:
    admin = f"{options.admin_host}:{options.admin_port}"
    argv = [
        *options.isthmus_command,
        *("gateway", "run", "--role", "ingress"),
        *("--config", str(prepared.config_dir), "--admin", admin),
    ]
    print(f"isthmus demo: starting the gateway: {shlex.join(argv)}", flush=True)
    children = Children(stop)
    try:
        await children.start("gateway", argv, tg)
        deadline = asyncio.get_running_loop().time() + options.ready_timeout_s
        ready, last = await children.wait_ok(
            options.admin_host, options.admin_port, "/ready", deadline
        )
        if ready:
            print(
                instructions(
                    prepared.summary, prepared.ca_path, options.admin_host, options.admin_port
                ),
                flush=True,
            )
        else:
            children.give_up(
                f"the gateway was not ready after {options.ready_timeout_s:g} s"
                f" (last answer from /ready: {last or 'none'})"
            )
        await stop.wait()
    finally:
        await asyncio.shield(children.stop_all(options.stop_timeout_s))
    for note in children.notes:
        print(f"isthmus demo: {note}", file=sys.stderr, flush=True)
    print("isthmus demo: stopped", flush=True)
    return 1 if children.failed else 0
