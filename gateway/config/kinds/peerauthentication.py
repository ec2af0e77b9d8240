"""Istio ``PeerAuthentication`` (``security.istio.io/v1``, ``v1beta1``): downstream mTLS mode.

Validated by the loader (the schema refuses every unknown field by name; :meth:`check` applies
Istio's own rules); :func:`effective_mode` decides the mode of one workload port, and the
sidecar compile step (``gateway.config.sidecar``) puts it on the inbound port binding as
``PortBinding.mtls``. ``gateway.transport.mtls_listener`` enforces it. docs/mtls.md has the
table of fields.

Fields: ``selector.matchLabels``, ``mtls.mode`` and ``portLevelMtls`` (a map from the
workload port, the sidecar's ``--app-port``, to ``{mode}``). Modes: ``STRICT`` (mTLS only),
``PERMISSIVE`` (mTLS and plaintext on one port), ``DISABLE`` (plaintext), ``UNSET`` (inherit).

Istio's resolution, which isthmus follows for a workload (``ProxySettings`` ``node``):

* mesh-wide: a policy without selector in the root namespace ``istio-system``;
* namespace-wide: a policy without selector in the workload's namespace;
* workload: a policy with a selector matching the workload's labels, in its namespace or in
  the root namespace.

The most specific level that sets a mode wins; ``UNSET`` (or no ``mtls``) inherits from the
level above, and the mesh default is PERMISSIVE. At one level the oldest policy
(``creationTimestamp``, then name) counts. ``portLevelMtls`` needs a selector (Istio refuses
it otherwise) and overrides the workload's mode for that port; an ``UNSET`` port inherits.

As in Istio, PeerAuthentication concerns workloads' inbound traffic: the sidecar role. An
ingress gateway's listeners are configured by its ``Gateway`` resources and are not changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast, get_args

from gateway.config.kinds.meta import Object
from gateway.config.kinds.policy_target import ROOT_NAMESPACE, WorkloadSelector
from gateway.config.schema import FieldIssue, Model, join
from gateway.config.snapshot import MtlsMode, Node

ISTIO_SECURITY = "security.istio.io"
Mode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]
MODES: tuple[str, ...] = get_args(Mode)
DEFAULT_MODE: Mode = "PERMISSIVE"


class MtlsSpec(Model, frozen=True, kw_only=True):
    mode: Mode = "UNSET"


class PeerAuthenticationSpec(Model, frozen=True, kw_only=True):
    selector: WorkloadSelector | None = None
    mtls: MtlsSpec | None = None
    # Checked by PeerAuthentication.check: YAML writes the ports as numbers, which the
    # schema's maps (string keys) do not take.
    port_level_mtls: Any = None

    def port_modes(self) -> dict[int, Mode]:
        """``portLevelMtls`` as port -> mode (valid after :meth:`PeerAuthentication.check`)."""
        out: dict[int, Mode] = {}
        for key, value in (self.port_level_mtls or {}).items():
            mode = value.get("mode", "UNSET") if isinstance(value, dict) else "UNSET"
            out[int(key)] = cast(Mode, mode) if mode in MODES else "UNSET"
        return out


class PeerAuthentication(Object, frozen=True, kw_only=True):
    kind_name = "PeerAuthentication"
    api_versions = (f"{ISTIO_SECURITY}/v1", f"{ISTIO_SECURITY}/v1beta1")

    spec: PeerAuthenticationSpec = PeerAuthenticationSpec()

    def check(self) -> list[FieldIssue]:
        spec = self.spec
        issues: list[FieldIssue] = []
        issues += _port_level_issues(spec.port_level_mtls)
        if spec.port_level_mtls and spec.selector is None:
            issues.append(("spec.portLevelMtls", "portLevelMtls needs a selector (as in Istio)"))
        if spec.selector is not None:
            for key, value in spec.selector.match_labels.items():
                here = join(join("spec.selector", "matchLabels"), key)
                if not key:
                    issues.append((here, "a label key must not be empty"))
                if "*" in key or "*" in value:
                    issues.append((here, "wildcards are not supported in a selector"))
        return issues

    @property
    def mode(self) -> Mode:
        return self.spec.mtls.mode if self.spec.mtls is not None else "UNSET"

    def selects(self, node: Node) -> bool:
        selector = self.spec.selector
        if selector is None:
            return False
        labels = dict(node.labels)
        return all(labels.get(k) == v for k, v in selector.match_labels.items())


def _age(policy: PeerAuthentication) -> tuple[str, str, str]:
    meta = policy.metadata
    return (meta.creation_timestamp, meta.namespace, meta.name)


def effective_mode(
    policies: Sequence[PeerAuthentication], node: Node, port: int | None
) -> MtlsMode | None:
    """The mTLS mode of workload ``port`` on ``node``: STRICT, PERMISSIVE, or None (DISABLE)."""
    ordered = sorted(policies, key=_age)
    mesh = next(
        (p for p in ordered if p.namespace == ROOT_NAMESPACE and p.spec.selector is None), None
    )
    namespace = next(
        (p for p in ordered if p.namespace == node.namespace and p.spec.selector is None), None
    )
    workload = next(
        (p for p in ordered if p.namespace in (node.namespace, ROOT_NAMESPACE) and p.selects(node)),
        None,
    )
    mode: Mode = DEFAULT_MODE
    for level in (mesh, namespace, workload):
        if level is not None and level.mode != "UNSET":
            mode = level.mode
    if workload is not None and port is not None:
        port_mode = workload.spec.port_modes().get(port, "UNSET")
        if port_mode != "UNSET":
            mode = port_mode
    if mode == "DISABLE":
        return None
    return "STRICT" if mode == "STRICT" else "PERMISSIVE"


def _port_level_issues(value: object) -> list[FieldIssue]:
    path = "spec.portLevelMtls"
    if value is None:
        return []
    if not isinstance(value, dict):
        return [(path, "expected a map from port numbers to {mode}")]
    issues: list[FieldIssue] = []
    for key, setting in value.items():
        here = join(path, str(key))
        text = str(key)
        if isinstance(key, bool) or not text.isdigit() or not 1 <= int(text) <= 65535:
            issues.append((here, f"{key!r} is not a port number (1-65535)"))
            continue
        if not isinstance(setting, dict):
            issues.append((here, "expected a mapping with mode"))
            continue
        for field in setting:
            if field != "mode":
                issues.append((join(here, str(field)), "unknown field"))
        mode = setting.get("mode", "UNSET")
        if mode not in MODES:
            expected = ", ".join(f'"{m}"' for m in MODES)
            issues.append((join(here, "mode"), f"expected one of {expected}, got {mode!r}"))
    return issues
