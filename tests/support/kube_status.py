"""Kubernetes ``Status`` errors for the API double (see :mod:`tests.support.kube_api`).

Every failure the double answers is a :class:`KubeStatusError`, which renders the exact
``{"kind":"Status","apiVersion":"v1",...}`` body kube-apiserver sends: ``status: Failure``, a
``reason`` (``NotFound``, ``AlreadyExists``, ``Conflict``, ``Invalid``, ``Expired``, ...), the HTTP
``code`` and ``details`` naming the object. The store raises them; the HTTP app renders them, both
as an HTTP answer and as the object of an in-stream ``ERROR`` watch event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One entry of ``details.causes`` (field-level validation failures)."""

    reason: str
    message: str
    field: str

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


@dataclass
class KubeStatusError(Exception):
    """A failure answered as a ``Status`` object with HTTP status ``code``."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def to_status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(name: str, group: str, kind: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    return details


def not_found(qualified: str, name: str, group: str, plural: str) -> KubeStatusError:
    """``services "x" not found`` (``qualified`` is ``plural[.group]``)."""
    return KubeStatusError(
        404, "NotFound", f'{qualified} "{name}" not found', _details(name, group, plural)
    )


def already_exists(qualified: str, name: str, group: str, plural: str) -> KubeStatusError:
    return KubeStatusError(
        409, "AlreadyExists", f'{qualified} "{name}" already exists', _details(name, group, plural)
    )


def conflict(qualified: str, name: str, group: str, plural: str) -> KubeStatusError:
    message = (
        f'Operation cannot be fulfilled on {qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    return KubeStatusError(409, "Conflict", message, _details(name, group, plural))


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> KubeStatusError:
    """422: ``Service "x" is invalid: <field>: <message>[, ...]``."""
    qualified_kind = f"{kind}.{group}" if group else kind
    summary = ", ".join(f"{c.field}: {c.message}" for c in causes)
    if len(causes) > 1:
        summary = f"[{summary}]"
    details = _details(name, group, kind)
    details["causes"] = [c.to_json() for c in causes]
    return KubeStatusError(
        422, "Invalid", f'{qualified_kind} "{name}" is invalid: {summary}', details
    )


def bad_request(message: str) -> KubeStatusError:
    return KubeStatusError(400, "BadRequest", message)


def expired(message: str) -> KubeStatusError:
    """410 Gone, reason ``Expired`` (a compacted resourceVersion or continue token)."""
    return KubeStatusError(410, "Expired", message)


def too_old(requested: int, oldest: int) -> KubeStatusError:
    return expired(f"too old resource version: {requested} ({oldest})")


def too_large(requested: int, current: int) -> KubeStatusError:
    """504: a list asked for a resourceVersion the store has not reached yet."""
    details: dict[str, Any] = {
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    }
    message = f"Too large resource version: {requested}, current: {current}"
    return KubeStatusError(504, "Timeout", message, details)


def unauthorized() -> KubeStatusError:
    return KubeStatusError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(method: str) -> KubeStatusError:
    return KubeStatusError(
        405,
        "MethodNotAllowed",
        f"the server does not allow this method on the requested resource ({method})",
    )


def request_too_large(limit: int) -> KubeStatusError:
    return KubeStatusError(
        413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}"
    )


def unsupported_media_type(content_type: str) -> KubeStatusError:
    return KubeStatusError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted"
        f' media types include: application/json, application/yaml ("{content_type}" was sent)',
    )
