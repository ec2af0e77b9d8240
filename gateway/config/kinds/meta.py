"""Shared pieces of every kind: ``metadata``, the object base class and common field types.

The kind modules next to this one build on :class:`Object`; the loader reads
``Object.kind_name``, ``api_versions`` and ``namespaced`` to pick a model, and calls
:meth:`Object.check` for the rules a schema cannot express. The compiler uses
:func:`parse_duration` and :func:`hostname_issue`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, ClassVar

import msgspec

from gateway.config.schema import FieldIssue, Model, expect

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"
# GEP-2257: one to four components of up to five digits and a unit.
DURATION = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"

GATEWAY_GROUP = "gateway.networking.k8s.io"
ISTHMUS_GROUP = "isthmus.dev"

Name = Annotated[
    str, expect("a DNS subdomain name (lower case)", pattern=DNS_SUBDOMAIN, max_length=253)
]
LabelName = Annotated[str, expect("a DNS label (lower case)", pattern=DNS_LABEL, max_length=63)]
Hostname = Annotated[
    str,
    expect("a hostname such as www.example.com or *.example.com", pattern=HOSTNAME, max_length=253),
]
HeaderName = Annotated[str, expect("a valid HTTP header name", pattern=HEADER_NAME, max_length=256)]
Duration = Annotated[
    str, expect("a duration such as 10s, 500ms or 1h2m (GEP-2257)", pattern=DURATION)
]
SectionName = Annotated[
    str, expect("a listener or rule name (lower case DNS label)", pattern=DNS_LABEL, max_length=253)
]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
OptionalName = Annotated[str, expect("a name (lower case)", pattern=DNS_SUBDOMAIN)]


class ObjectMeta(Model, frozen=True, kw_only=True):
    """``metadata``. Bookkeeping fields written by an API server are accepted and unused."""

    unsupported_fields = {
        "generateName": "not supported by isthmus: set metadata.name",
    }

    name: Name
    namespace: LabelName = "default"
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    creation_timestamp: str = ""
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    managed_fields: Any = None
    owner_references: Any = None
    finalizers: Any = None
    deletion_timestamp: Any = None
    deletion_grace_period_seconds: Any = None


class Object(Model, frozen=True, kw_only=True):
    """A Kubernetes object. Subclasses set the class variables and add ``spec``."""

    kind_name: ClassVar[str] = ""
    api_versions: ClassVar[tuple[str, ...]] = ()
    namespaced: ClassVar[bool] = True

    api_version: str
    kind: str
    metadata: ObjectMeta
    status: Any = None  # written by controllers; never read

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace if self.namespaced else ""

    def check(self) -> list[FieldIssue]:
        """Problems the schema cannot express (cross-field rules, parsing)."""
        return []


def parse_duration(text: str) -> float:
    """Seconds in a GEP-2257 duration (already validated against ``DURATION``)."""
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(int(n) * scale[unit] for n, unit in re.findall(r"(\d+)(ms|h|m|s)", text))


def hostname_issue(path: str, hostname: str) -> FieldIssue | None:
    """Gateway API hostnames are never IP addresses (which the pattern alone admits)."""
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return None
    return (path, f'"{hostname}" is an IP address; hostnames must be DNS names')
