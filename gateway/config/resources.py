"""The validated objects of a configuration directory, before compilation.

``gateway.config.loader`` produces :class:`Resources`; ``gateway.config.compile`` reads it.
Each object remembers the file and line it came from, so that problems found while compiling
(a port conflict, say) can point at the YAML like the loader's own problems do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from gateway.config.errors import Problem
from gateway.config.kinds.meta import Object

T = TypeVar("T", bound=Object)


class ObjectKey(NamedTuple):
    """What makes an object unique. ``namespace`` is empty for cluster-scoped kinds."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind} {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"


def key_of(obj: Object) -> ObjectKey:
    return ObjectKey(obj.kind_name, obj.namespace, obj.name)


class Origin(NamedTuple):
    file: str
    line: int | None


@dataclass(frozen=True, slots=True)
class Resources:
    """Every loaded object, sorted by (kind, namespace, name), and where each came from."""

    objects: tuple[Object, ...] = ()
    origins: Mapping[ObjectKey, Origin] = field(default_factory=dict)

    def of_kind(self, cls: type[T]) -> tuple[T, ...]:
        return tuple(o for o in self.objects if isinstance(o, cls))

    def problem(self, obj: Object, path: str, message: str) -> Problem:
        """A problem about ``obj``, located at the file and line it was loaded from."""
        key = key_of(obj)
        origin = self.origins.get(key, Origin("<unknown>", None))
        return Problem(origin.file, message, obj=str(key), path=path, line=origin.line)
