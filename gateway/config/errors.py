"""Errors of the configuration loader and compiler.

``gateway.config.loader`` and ``gateway.config.compile`` collect every problem they find in a
configuration directory and raise one :class:`ConfigError`. Callers (the ``isthmus`` CLI, the
reload path of the proxy process) print ``str(error)``, which lists the problems one per line,
and keep the last good snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the configuration.

    ``file`` is the YAML file, ``line`` the 1-based line in it (when known), ``obj`` the object
    as ``Kind namespace/name`` and ``path`` the field inside the object, e.g.
    ``spec.rules[0].matches[0].path.tpye``.
    """

    file: str
    message: str
    obj: str = ""
    path: str = ""
    line: int | None = None

    def __str__(self) -> str:
        location = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [location]
        if self.obj:
            parts.append(self.obj)
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        return ": ".join(parts)


class ConfigError(Exception):
    """A configuration that cannot be loaded or compiled. ``problems`` lists every reason."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
