"""The ``when`` keys of an AuthorizationPolicy: which Istio attributes isthmus evaluates.

:func:`parse_key` is called by the ``AuthorizationPolicy`` kind to validate each condition
and by ``gateway.filters.authz_rules`` to compile it. A key is an attribute name, optionally
followed by bracketed names: ``request.headers[x-user]`` (one name, compared without regard
to case) or ``request.auth.claims[group][id]`` (one or more names, a path into nested
claims).

Supported: ``request.headers[...]``, ``source.ip``, ``source.namespace``,
``source.principal``, ``request.auth.principal``, ``request.auth.audiences``,
``request.auth.presenter``, ``request.auth.claims[...]``, ``destination.port``. The other
attributes Istio knows are refused by name; unknown ones as unknown.
"""

from __future__ import annotations

import ipaddress

from gateway.config.schema import NOT_SUPPORTED

HEADERS = "request.headers"
CLAIMS = "request.auth.claims"
PLAIN = frozenset(
    {
        "source.ip",
        "source.namespace",
        "source.principal",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.port",
    }
)
_REFUSED = {
    "remote.ip": f"{NOT_SUPPORTED} (needs trusted X-Forwarded-For hops); use source.ip",
    "source.serviceAccount": f"{NOT_SUPPORTED}; use source.principal",
    "destination.ip": NOT_SUPPORTED,
    "connection.sni": NOT_SUPPORTED,
    "request.experimental.inline.headers": f"{NOT_SUPPORTED}; use request.headers[...]",
    "experimental.envoy.filters": NOT_SUPPORTED,
    "destination.namespace": "replaced by the policy's metadata.namespace (as in Istio)",
    "destination.labels": "replaced by the workload selector (as in Istio)",
    "destination.name": "deprecated attribute: only supported in Istio v1alpha1",
    "destination.user": "deprecated attribute: only supported in Istio v1alpha1",
}


def parse_key(key: str) -> tuple[str, tuple[str, ...]]:
    """``(attribute, names)`` of a condition key; raises ``ValueError`` with the reason."""
    if not key:
        raise ValueError("the key must not be empty")
    for refused, reason in _REFUSED.items():
        if key == refused or key.startswith(refused + "[") or key.startswith(refused + "."):
            raise ValueError(f'"{key}": {reason}')
    if key in PLAIN:
        return key, ()
    for attribute in (HEADERS, CLAIMS):
        if key.startswith(attribute + "["):
            names = _bracketed(key, attribute)
            if attribute == HEADERS:
                if len(names) != 1:
                    raise ValueError(f'"{key}": name one header, as in {HEADERS}[x-user]')
                return attribute, (names[0].lower(),)
            return attribute, names
    raise ValueError(f'"{key}" is not an attribute isthmus knows')


def _bracketed(key: str, attribute: str) -> tuple[str, ...]:
    inner = key[len(attribute) :]
    if not inner.endswith("]") or len(inner) < 3:
        raise ValueError(f'"{key}": should have the form {attribute}[name]')
    names = tuple(inner[1:-1].split("]["))
    if any(not n or "[" in n or "]" in n for n in names):
        raise ValueError(f'"{key}": should have the form {attribute}[name] with non-empty names')
    return names


def value_problem(attribute: str, value: str) -> str | None:
    """What is wrong with ``value`` for ``attribute`` (IPs and ports are checked), or None."""
    if not value:
        return "empty values are not allowed"
    if attribute == "source.ip":
        return ip_problem(value)
    if attribute == "destination.port":
        return port_problem(value)
    return None


def ip_problem(value: str) -> str | None:
    """Istio's IP block rule: an address, or a CIDR range with ``/``."""
    try:
        if "/" in value:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        kind = "CIDR range" if "/" in value else "IP address"
        return f'"{value}" is not an {kind}'
    return None


def port_problem(value: str) -> str | None:
    """Istio's port rule: a decimal number from 0 to 65535."""
    if not value.isdigit() or not value.isascii() or int(value) > 65535:
        return f'"{value}" is not a port number (0 to 65535)'
    return None
