"""Shape checks, validation and defaulting of objects written to the Kubernetes API double.

Sans-IO helpers for :mod:`tests.support.kube_store`:

- :func:`check_shape` rejects what kube-apiserver could not even decode (a non-object body,
  ``metadata`` or ``labels`` of the wrong JSON type, a mismatched ``apiVersion``/``kind``):
  :class:`~tests.support.kube_status.KubeStatusError` 400.
- :func:`validate` returns the field causes kube-apiserver answers with 422 ``Invalid``: names
  (DNS-1035 labels for Services, DNS-1123 labels for Namespaces, DNS-1123 subdomains otherwise),
  EndpointSlice ``addressType``/``addresses``/ports, Service ports.
- :func:`apply_defaults` fills what the apiserver defaults: Service ``type``, ``clusterIP``,
  ``sessionAffinity``, port ``protocol``/``targetPort``; Pod ``serviceAccountName`` and
  ``status.phase``; Namespace label ``kubernetes.io/metadata.name``, ``spec.finalizers``,
  ``status.phase``; Secret ``type`` and ``stringData`` folded into ``data``; EndpointSlice port
  ``protocol`` and ``endpoints: []``.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from tests.support.kube_resources import ResourceType
from tests.support.kube_status import Cause, KubeStatusError, bad_request

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)

_MSG_1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
_MSG_1123_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_MSG_1123_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def _decode_error(rt: ResourceType, why: str) -> KubeStatusError:
    return bad_request(f"the object provided is unrecognized (must be of type {rt.kind}): {why}")


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def check_shape(rt: ResourceType, obj: Any) -> dict[str, Any]:
    """The decodable object, or 400 (what kube-apiserver's decoder would refuse)."""
    if not isinstance(obj, dict):
        raise _decode_error(rt, "couldn't get version/kind; the body is not a JSON object")
    api_version = obj.get("apiVersion")
    if api_version not in (None, "", rt.api_version):
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({rt.api_version})"
        )
    kind = obj.get("kind")
    if kind not in (None, "", rt.kind):
        raise bad_request(
            f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
        )
    meta = obj.get("metadata", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise _decode_error(rt, "metadata must be an object")
    for key in ("name", "namespace", "generateName", "resourceVersion", "uid"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise _decode_error(rt, f"metadata.{key} must be a string")
    for key in ("labels", "annotations"):
        if meta.get(key) is not None and not _string_map(meta[key]):
            raise _decode_error(rt, f"metadata.{key} must map strings to strings")
    for key in ("spec", "status"):
        if obj.get(key) is not None and not isinstance(obj[key], dict):
            raise _decode_error(rt, f"{key} must be an object")
    out = copy.deepcopy(obj)  # the store keeps it: never share the caller's nested dicts
    out["metadata"] = out.get("metadata") or {}
    return out


def _name_causes(rt: ResourceType, name: str) -> list[Cause]:
    if not name:
        return [
            Cause(
                "FieldValueRequired",
                "Required value: name or generateName is required",
                "metadata.name",
            )
        ]
    if rt.builtin and rt.group == "" and rt.plural == "services":
        pattern, message, limit = _DNS1035_LABEL, _MSG_1035, 63
    elif rt.plural == "namespaces" and rt.group == "":
        pattern, message, limit = _DNS1123_LABEL, _MSG_1123_LABEL, 63
    else:
        pattern, message, limit = _DNS1123_SUBDOMAIN, _MSG_1123_SUBDOMAIN, 253
    if len(name) > limit:
        return [
            Cause(
                "FieldValueTooLong",
                f"Too long: may not be more than {limit} bytes",
                "metadata.name",
            )
        ]
    if not pattern.match(name):
        return [Cause("FieldValueInvalid", f'Invalid value: "{name}": {message}', "metadata.name")]
    return []


def _port_causes(ports: Any, prefix: str, required: bool) -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(ports, list):
        return [Cause("FieldValueInvalid", "Invalid value: must be a list", prefix)]
    for i, port in enumerate(ports):
        where = f"{prefix}[{i}]"
        if not isinstance(port, dict):
            causes.append(Cause("FieldValueInvalid", "Invalid value: must be an object", where))
            continue
        number = port.get("port")
        if number is None:
            if required:
                causes.append(Cause("FieldValueRequired", "Required value", f"{where}.port"))
        elif isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"Invalid value: {number!r}: must be between 1 and 65535, inclusive",
                    f"{where}.port",
                )
            )
        protocol = port.get("protocol")
        if protocol is not None and protocol not in ("TCP", "UDP", "SCTP"):
            causes.append(
                Cause(
                    "FieldValueNotSupported",
                    f'Unsupported value: "{protocol}": supported values: "SCTP", "TCP", "UDP"',
                    f"{where}.protocol",
                )
            )
    return causes


def _endpoint_slice_causes(obj: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    address_type = obj.get("addressType")
    if address_type is None:
        causes.append(Cause("FieldValueRequired", "Required value", "addressType"))
    elif address_type not in ("IPv4", "IPv6", "FQDN"):
        causes.append(
            Cause(
                "FieldValueNotSupported",
                f'Unsupported value: "{address_type}": supported values: "FQDN", "IPv4", "IPv6"',
                "addressType",
            )
        )
    endpoints = obj.get("endpoints") or []
    if not isinstance(endpoints, list):
        return [*causes, Cause("FieldValueInvalid", "Invalid value: must be a list", "endpoints")]
    for i, ep in enumerate(endpoints):
        addresses = ep.get("addresses") if isinstance(ep, dict) else None
        if not isinstance(addresses, list) or not addresses:
            causes.append(
                Cause(
                    "FieldValueRequired",
                    "Required value: must contain at least 1 address",
                    f"endpoints[{i}].addresses",
                )
            )
            continue
        for j, address in enumerate(addresses):
            if address_type in ("IPv4", "IPv6") and not _is_ip(address, address_type):
                causes.append(
                    Cause(
                        "FieldValueInvalid",
                        f'Invalid value: "{address}": must be a valid {address_type} address',
                        f"endpoints[{i}].addresses[{j}]",
                    )
                )
    causes.extend(_port_causes(obj.get("ports") or [], "ports", required=False))
    return causes


def _is_ip(value: Any, family: str) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return False
    return ip.version == (4 if family == "IPv4" else 6)


def validate(rt: ResourceType, obj: dict[str, Any]) -> list[Cause]:
    """Field causes for a 422 (empty when the object is valid)."""
    causes = _name_causes(rt, obj["metadata"].get("name", ""))
    if rt.group == "discovery.k8s.io" and rt.plural == "endpointslices":
        causes.extend(_endpoint_slice_causes(obj))
    if rt.group == "" and rt.plural == "services":
        spec = obj.get("spec") or {}
        causes.extend(_port_causes(spec.get("ports") or [], "spec.ports", required=True))
    return causes


def apply_defaults(
    rt: ResourceType, obj: dict[str, Any], allocate_ip: Callable[[], str]
) -> dict[str, Any]:
    """Fill the fields kube-apiserver defaults (in place; returns ``obj``)."""
    if rt.group == "" and rt.plural == "services":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            if not spec.get("clusterIP"):
                spec["clusterIP"] = allocate_ip()
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            if "port" in port:
                port.setdefault("targetPort", port["port"])
    elif rt.group == "" and rt.plural == "pods":
        spec = obj.setdefault("spec", {})
        spec.setdefault("serviceAccountName", spec.get("serviceAccount", "default"))
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("containers", [])
        obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif rt.group == "" and rt.plural == "namespaces":
        meta = obj["metadata"]
        labels = dict(meta.get("labels") or {})
        labels["kubernetes.io/metadata.name"] = meta["name"]
        meta["labels"] = labels
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
    elif rt.group == "" and rt.plural == "secrets":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = dict(obj.get("data") or {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = data
    elif rt.group == "discovery.k8s.io" and rt.plural == "endpointslices":
        if obj.get("endpoints") is None:
            obj["endpoints"] = []
        for port in obj.get("ports") or []:
            port.setdefault("protocol", "TCP")
    return obj
