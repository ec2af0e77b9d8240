"""The multi-cluster demo behind ``isthmus demo --clusters N`` (N from 2 to 5).

Everything runs on this machine, as real processes on loopback ports:

- one embedded catalog (``isthmus catalog serve``), standing in for Consul;
- a mesh PKI made with ``pki``: one root, one intermediate CA per cluster, and an SVID for
  every proxy that speaks mTLS (trust domain ``demo.mesh``);
- per cluster: its federation controller (``isthmus federation run`` over a directory of
  YAML under ``.demo/clusters/<cluster>/source``), its east-west gateway, and one app (an
  echo backend) behind its sidecar, both configured by the controller only. The first
  cluster, ``east``, runs the app ``web`` and the ingress gateway; every other cluster runs
  and exports the app ``hello``, STRICT mTLS, with an AuthorizationPolicy that admits only
  east's ingress and east's ``web``.

So east's ingress routes ``/`` to ``hello``, a Service east does not have: the request
leaves with east's identity and the SNI of ``hello``, crosses the other cluster's east-west
gateway without being decrypted, and reaches ``hello`` through its sidecar, which logs the
caller's SPIFFE ID. The printed commands show that path, the sidecar path from ``web``, the
controllers' ``isthmus federation status`` and the east-west gateway's routes.
"""

from __future__ import annotations

import asyncio
import datetime
import shutil
import signal
import sys
from dataclasses import astuple, dataclass
from pathlib import Path

from isthmus.backends import Backend
from isthmus.children import Children
from isthmus.demo import DemoError, check_ports_free
from pki.authority import Authority, create_root
from pki.bundle import TrustBundle
from pki.keys import generate_key, private_key_to_pem
from pki.pem import certificates_to_pem
from pki.spiffe import workload_id

CLUSTERS = ("east", "west", "north", "south", "central")
TRUST_DOMAIN = "demo.mesh"
NAMESPACE = "demo"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ClustersOptions:
    """What ``isthmus demo --clusters N`` runs. Ports are ``base_port + offset`` (see
    :func:`ports_of`) besides the ingress's, so that the printed commands stay the same."""

    clusters: int = 2
    runtime_dir: Path = Path(".demo")
    ingress_port: int = 8080
    admin_port: int = 15000
    base_port: int = 18500
    isthmus_command: tuple[str, ...] = (sys.executable, "-m", "isthmus")
    ready_timeout_s: float = 60.0
    stop_timeout_s: float = 15.0


@dataclass(frozen=True, slots=True)
class ClusterPorts:
    controller: int
    eastwest: int  # where other clusters reach this one (its Consul node's port)
    eastwest_admin: int
    app: int
    inbound: int
    outbound: int
    sidecar_admin: int


def ports_of(options: ClustersOptions, index: int) -> ClusterPorts:
    base = options.base_port + 10 + 10 * index
    return ClusterPorts(*(base + k for k in range(7)))


def catalog_port(options: ClustersOptions) -> int:
    return options.base_port


def app_of(index: int) -> str:
    return "web" if index == 0 else "hello"


# --- the runtime directory ------------------------------------------------------------------


def prepare(options: ClustersOptions) -> Path:
    """Lay out ``<runtime>/clusters``: each cluster's source YAML and the SVIDs."""
    if not 2 <= options.clusters <= len(CLUSTERS):
        raise DemoError(f"--clusters must be between 2 and {len(CLUSTERS)}")
    root_dir = options.runtime_dir / "clusters"
    if root_dir.exists():
        shutil.rmtree(root_dir)  # ours: rebuilt at every start
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    root = create_root(generate_key(), TRUST_DOMAIN, common_name="isthmus demo root", now=start)
    bundle = TrustBundle.of([root.cert]).to_pem()
    for index in range(options.clusters):
        name = CLUSTERS[index]
        directory = root_dir / name
        key = generate_key()
        ca = Authority.load(root.issue_intermediate(key.public_key(), name, now=start), key,
                            (root.cert,))  # fmt: skip
        accounts = [app_of(index), *(["isthmus-ingress"] if index == 0 else [])]
        for account in accounts:
            leaf_key = generate_key()
            spiffe_id = workload_id(TRUST_DOMAIN, NAMESPACE, account)
            leaf = ca.sign_leaf(leaf_key.public_key(), spiffe_id, ttl=datetime.timedelta(days=1),
                                now=start)  # fmt: skip
            svid = directory / "svid" / account
            svid.mkdir(parents=True)
            (svid / "chain.pem").write_bytes(certificates_to_pem([leaf, ca.cert]))
            (svid / "key.pem").write_bytes(private_key_to_pem(leaf_key))
            (svid / "bundle.pem").write_bytes(bundle)
            (svid / "key.pem").chmod(0o600)
        source = directory / "source"
        source.mkdir(parents=True)
        (source / "app.yaml").write_text(_app_yaml(options, index))
        if index == 0:
            (source / "ingress.yaml").write_text(_ingress_yaml(options))
    return root_dir


def _app_yaml(options: ClustersOptions, index: int) -> str:
    app, name = app_of(index), CLUSTERS[index]
    ports = ports_of(options, index)
    east = f"{TRUST_DOMAIN}/ns/{NAMESPACE}/sa"
    access_log = (options.runtime_dir / "clusters" / name / "access.log").resolve()
    docs = [
        f"""apiVersion: v1
kind: Service
metadata: {{name: {app}, namespace: {NAMESPACE}}}
spec:
  ports: [{{name: http, port: 80}}]
""",
        f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {app}-1
  namespace: {NAMESPACE}
  labels: {{kubernetes.io/service-name: {app}}}
addressType: IPv4
endpoints: [{{addresses: [{LOOPBACK}], conditions: {{ready: true}}}}]
ports: [{{name: http, port: {ports.inbound}}}]
""",
        f"""apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {{name: {app}, namespace: {NAMESPACE}}}
""",
        f"""apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {app}, namespace: {NAMESPACE}}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  mtls: {{mode: STRICT}}
""",
        f"""apiVersion: isthmus.dev/v1alpha1
kind: ProxySettings
metadata: {{name: proxies, namespace: {NAMESPACE}}}
spec:
  telemetry:
    accessLog: {{path: {access_log}}}
""",
    ]
    if index > 0:
        docs.append(f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: from-east, namespace: {NAMESPACE}}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{principals: ["{east}/isthmus-ingress", "{east}/web"]}}}}]
""")
    return "---\n".join(docs)


def _ingress_yaml(options: ClustersOptions) -> str:
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: ingress, namespace: {NAMESPACE}}}
spec:
  gatewayClassName: isthmus
  addresses: [{{type: IPAddress, value: {LOOPBACK}}}]
  listeners: [{{name: http, port: {options.ingress_port}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: hello, namespace: {NAMESPACE}}}
spec:
  parentRefs: [{{name: ingress}}]
  rules:
  - backendRefs: [{{name: hello, port: 80}}]
"""


# --- the processes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str  # for messages and the log file
    argv: tuple[str, ...]
    ready: tuple[int, str] | None  # (port, path) that answers 200 once it is up
    log: Path


def process_specs(options: ClustersOptions, root_dir: Path) -> list[_Spec]:
    """Every process of the demo, in start order."""
    cmd = options.isthmus_command
    catalog = f"http://{LOOPBACK}:{catalog_port(options)}"
    port = catalog_port(options)
    argv = (*cmd, "catalog", "serve", "--listen", f"{LOOPBACK}:{port}")
    specs = [_Spec("catalog", argv, (port, "/v1/status/leader"), root_dir / "catalog.log")]
    for index in range(options.clusters):
        name, app = CLUSTERS[index], app_of(index)
        ports = ports_of(options, index)
        directory = root_dir / name
        control = f"http://{LOOPBACK}:{ports.controller}"
        specs.append(_Spec(f"{name} controller", (
            *cmd, "federation", "run", "--cluster", name, "--catalog", catalog,
            "--source", str(directory / "source"), "--listen", f"{LOOPBACK}:{ports.controller}",
            "--gateway", f"{LOOPBACK}:{ports.eastwest}", "--locality", f"{name}/{name}-1",
            "--trust-domain", TRUST_DOMAIN,
        ), (ports.controller, "/ready"), directory / "controller.log"))  # fmt: skip
        specs.append(_Spec(f"{name} east-west gateway", (
            *cmd, "gateway", "run", "--role", "eastwest", "--control-plane", control,
            "--proxy-id", f"eastwest-{name}", "--namespace", NAMESPACE, "--cluster", name,
            "--admin", f"{LOOPBACK}:{ports.eastwest_admin}",
        ), (ports.eastwest_admin, "/ready"), directory / "eastwest.log"))  # fmt: skip
        svid = directory / "svid" / app
        specs.append(_Spec(f"{name} {app} sidecar", (
            *cmd, "gateway", "run", "--role", "sidecar", "--control-plane", control,
            "--proxy-id", f"{app}-{name}", "--namespace", NAMESPACE, "--workload", app,
            "--label", f"app={app}", "--cluster", name,
            "--inbound-port", str(ports.inbound), "--inbound-address", LOOPBACK,
            "--app-port", str(ports.app), "--outbound-port", str(ports.outbound),
            "--admin", f"{LOOPBACK}:{ports.sidecar_admin}", *_identity(svid),
        ), (ports.sidecar_admin, "/ready"), directory / f"{app}-sidecar.log"))  # fmt: skip
        if index == 0:
            specs.append(_Spec(f"{name} ingress gateway", (
                *cmd, "gateway", "run", "--role", "ingress", "--control-plane", control,
                "--proxy-id", f"ingress-{name}", "--namespace", NAMESPACE, "--cluster", name,
                "--admin", f"{LOOPBACK}:{options.admin_port}",
                *_identity(directory / "svid" / "isthmus-ingress"),
            ), (options.admin_port, "/ready"), directory / "ingress.log"))  # fmt: skip
    return specs


def _identity(svid: Path) -> tuple[str, ...]:
    return ("--cert", str(svid / "chain.pem"), "--key", str(svid / "key.pem"),
            "--bundle", str(svid / "bundle.pem"))  # fmt: skip


def all_ports(options: ClustersOptions) -> list[int]:
    ports = [catalog_port(options), options.ingress_port, options.admin_port]
    for index in range(options.clusters):
        ports.extend(astuple(ports_of(options, index)))
    return ports


# --- what to try ----------------------------------------------------------------------------


def instructions(options: ClustersOptions, root_dir: Path) -> str:
    east = ports_of(options, 0)
    west = CLUSTERS[1]
    names = ", ".join(CLUSTERS[: options.clusters])
    others = ", ".join(CLUSTERS[1 : options.clusters])
    host = f"hello.{NAMESPACE}.svc.clusterset.local"
    ingress = f"http://{LOOPBACK}:{options.ingress_port}/"
    backend = """grep -o '"backend":"[^"]*"'"""
    hostnames = """grep -o '"hostnames":\\[[^]]*\\]'"""
    eastwest_admin = f"http://{LOOPBACK}:{ports_of(options, 1).eastwest_admin}"
    return "\n".join([
        "",
        f"Isthmus multi-cluster demo is ready: {options.clusters} clusters ({names}).",
        f"east runs the ingress and the app web; {others} run and export hello.",
        "Ctrl-C stops everything.",
        "",
        "  # east's ingress to hello, which only the other clusters have",
        "  # (mTLS from the ingress to hello's sidecar, through their east-west gateways)",
        f"  for i in $(seq 6); do curl -s {ingress}; echo; done | {backend}",
        "  # the caller hello's sidecar saw: east's ingress, by its SPIFFE ID",
        f"  tail -n 1 {root_dir / west / 'access.log'}",
        "  # web's sidecar (east) calling hello by its clusterset name",
        f"  curl -s -H 'host: {host}' http://{LOOPBACK}:{east.outbound}/from-web",
        "  # every proxy of east and whether it runs the snapshot it should",
        f"  isthmus federation status --control-plane http://{LOOPBACK}:{east.controller}",
        f"  # {west}'s east-west gateway: one SNI route per exported service port",
        f"  curl -s {eastwest_admin}/config | {hostnames}",
        "",
        f"Logs: {root_dir}/<cluster>/*.log",
        "",
    ])  # fmt: skip


# --- running --------------------------------------------------------------------------------


async def run(options: ClustersOptions, stop: asyncio.Event | None = None) -> int:
    """Run the demo until SIGINT/SIGTERM (or ``stop``). 0 after a requested stop, 1 when a
    process failed. Raises :class:`DemoError` when the demo cannot start."""
    check_ports_free(LOOPBACK, all_ports(options))
    root_dir = prepare(options)
    backends = [Backend(f"{app_of(i)}-{CLUSTERS[i]}", LOOPBACK, ports_of(options, i).app)
                for i in range(options.clusters)]  # fmt: skip
    for backend in backends:
        backend.bind()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = (signal.SIGINT, signal.SIGTERM)
    for sig in handled:
        loop.add_signal_handler(sig, stop.set)
    children = Children(stop)
    try:
        async with asyncio.TaskGroup() as tg:
            for backend in backends:
                tg.create_task(backend.serve(), name=f"backend {backend.name}")
            try:
                if await _start_all(options, root_dir, children, tg):
                    print(instructions(options, root_dir), flush=True)
                await stop.wait()
            finally:
                await asyncio.shield(children.stop_all(options.stop_timeout_s))
                for backend in backends:
                    backend.stop()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
    for note in children.notes:
        print(f"isthmus demo: {note}", file=sys.stderr, flush=True)
    print("isthmus demo: stopped", flush=True)
    return 1 if children.failed else 0


async def _start_all(
    options: ClustersOptions, root_dir: Path, children: Children, tg: asyncio.TaskGroup
) -> bool:
    deadline = asyncio.get_running_loop().time() + options.ready_timeout_s
    for spec in process_specs(options, root_dir):
        print(f"isthmus demo: starting the {spec.name} (log: {spec.log})", flush=True)
        await children.start(spec.name, list(spec.argv), tg, log=spec.log)
        if spec.ready is not None:
            port, path = spec.ready
            if not (await children.wait_ok(LOOPBACK, port, path, deadline))[0]:
                return children.give_up(f"the {spec.name} was not ready; see {spec.log}")
    # The first cross-cluster answer: imports, snapshots and certificates all in place.
    if not (await children.wait_ok(LOOPBACK, options.ingress_port, "/", deadline))[0]:
        return children.give_up("east's ingress never reached hello in another cluster; "
                                f"see the logs in {root_dir}")  # fmt: skip
    return True
