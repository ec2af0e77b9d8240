"""Read a configuration directory of Kubernetes YAML into validated :class:`Resources`.

Called by ``gateway.config.compile.load_snapshot`` (and so by the CLI and the reload path).
:func:`load_objects` validates objects that are already decoded, for the federation
controller's sources (``federation.sources.store``).
Every ``*.yaml``/``*.yml`` file under the directory is read, recursively and in sorted order;
hidden files and directories (such as the ``..data`` links of a mounted ConfigMap) are
skipped. A file may hold several documents, and a document may be a ``kind: List``. Every
object is validated, all problems are collected, and one :class:`ConfigError` lists them,
each with its file, line, object and field path.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import yaml

from gateway.config.errors import ConfigError, Problem
from gateway.config.kinds import KINDS, Object, ProxySettings
from gateway.config.resources import ObjectKey, Origin, Resources, key_of
from gateway.config.schema import FieldIssue, item, join, validate


def load_directory(path: str | os.PathLike[str]) -> Resources:
    """Load and validate every object under ``path`` (a directory, or a single file)."""
    root = Path(path)
    if not root.exists():
        raise ConfigError([Problem(str(root), "no such file or directory")])
    files = [root] if root.is_file() else _yaml_files(root)
    collector = _Collector()
    for file in files:
        collector.read_file(file)
    return collector.finish()


def load_objects(
    docs: Iterable[Any], origin_label: str, problems: list[Problem] | None = None
) -> Resources:
    """Validate already-decoded objects (from a Kubernetes API, say) like ``load_directory``.

    Each object's origin is ``origin_label`` (there are no lines). Without ``problems`` any
    problem raises one :class:`ConfigError`; with it, the problems are appended to that list
    and the valid objects are returned (the federation controller skips bad objects).
    """
    collector = _Collector()
    for number, data in enumerate(docs, start=1):
        collector._read_object(origin_label, _Document(data, None), data, "", number)
    return collector.finish(problems)


def _yaml_files(root: Path) -> list[Path]:
    found = []
    for candidate in root.rglob("*"):
        relative = candidate.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
            found.append(candidate)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


@dataclass(slots=True)
class _Document:
    """One YAML document, with the line of every field path in it."""

    data: Any
    line: int | None
    lines: dict[str, int] = field(default_factory=dict)

    def origin(self, file: str, prefix: str) -> Origin:
        """The origin of the object at ``prefix`` (``""``, or ``items[i]`` in a List)."""
        if not prefix:
            return Origin(file, self.line, self.lines)
        lines = {
            path[len(prefix) :].lstrip("."): line
            for path, line in self.lines.items()
            if path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in (".", "[", "")
        }
        return Origin(file, lines.get("", self.line), lines)


@dataclass(slots=True)
class _Collector:
    objects: dict[ObjectKey, Object] = field(default_factory=dict)
    origins: dict[ObjectKey, Origin] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def read_file(self, file: Path) -> None:
        name = str(file)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(Problem(name, f"cannot read: {exc}"))
            return
        try:
            documents = _parse(text, name, self.problems)
        except yaml.YAMLError as exc:
            self.problems.append(_yaml_problem(name, exc))
            return
        for number, doc in enumerate(documents, start=1):
            if doc.data is None:
                continue  # an empty document, e.g. after a trailing "---"
            self._read_object(name, doc, doc.data, prefix="", number=number)

    def _read_object(self, file: str, doc: _Document, data: Any, prefix: str, number: int) -> None:
        origin = doc.origin(file, prefix)

        def problem(path: str, message: str, obj: str = "") -> None:
            self.problems.append(Problem(file, message, obj, path, origin.line_of(path)))

        if not isinstance(data, dict):
            what = "a list" if isinstance(data, list) else f"{type(data).__name__} {data!r}"
            problem(
                "",
                f"{prefix or f'document {number}'}: expected a Kubernetes object (a mapping with "
                f"apiVersion and kind), got {what}",
            )
            return
        kind, api_version = data.get("kind"), data.get("apiVersion")
        if kind == "List" and api_version == "v1":
            self._read_list(file, doc, data, number)
            return
        label = _label(data)
        if not isinstance(kind, str) or not kind:
            problem("kind", "required field is missing", label)
            return
        cls = KINDS.get(kind)
        if cls is None:
            known = ", ".join(sorted(KINDS))
            problem(
                "kind",
                f'unknown kind "{kind}" (apiVersion {api_version}); isthmus reads {known}',
                label,
            )
            return
        if api_version not in cls.api_versions:
            problem(
                "apiVersion",
                f'"{api_version}" is not a supported apiVersion for {kind}; '
                f"use {' or '.join(cls.api_versions)}",
                label,
            )
            return
        _normalize_timestamp(data)
        obj, issues = _build(cls, data)
        for path, message in issues:
            problem(path, message, label)
        if obj is not None:
            self._add(obj, origin, label)

    def _read_list(self, file: str, doc: _Document, data: dict[str, Any], number: int) -> None:
        items = data.get("items")
        if not isinstance(items, list):
            line = doc.origin(file, "").line_of("items")
            self.problems.append(
                Problem(file, "a List needs a list of items", path="items", line=line)
            )
            return
        for i, element in enumerate(items):
            self._read_object(file, doc, element, prefix=item("items", i), number=number)

    def _add(self, obj: Object, origin: Origin, label: str) -> None:
        key = key_of(obj)
        first = self.origins.get(key)
        if first is not None:
            self.problems.append(
                Problem(
                    origin.file,
                    f"duplicate object; first defined at {first}",
                    label,
                    line=origin.line,
                )
            )
            return
        self.objects[key] = obj
        self.origins[key] = origin

    def finish(self, problems: list[Problem] | None = None) -> Resources:
        settings = sorted(k for k in self.objects if k.kind == ProxySettings.kind_name)
        for key in settings[1:]:
            origin = self.origins.pop(key)
            del self.objects[key]
            self.problems.append(
                Problem(
                    origin.file,
                    f"only one ProxySettings is allowed; {settings[0]} is already loaded",
                    str(key),
                    line=origin.line,
                )
            )
        if self.problems:
            if problems is None:
                raise ConfigError(self.problems)
            problems.extend(self.problems)
        keys = sorted(self.objects)
        return Resources(tuple(self.objects[k] for k in keys), {k: self.origins[k] for k in keys})


def _build(cls: type[Object], data: dict[str, Any]) -> tuple[Object | None, list[FieldIssue]]:
    issues = validate(data, cls)
    if issues:
        return None, issues
    try:
        obj = msgspec.convert(data, cls)
    except msgspec.ValidationError as exc:  # validate() should have caught it
        return None, [("", str(exc))]
    issues = obj.check()
    return (None if issues else obj), issues


def _parse(text: str, file: str, problems: list[Problem]) -> list[_Document]:
    loader = yaml.SafeLoader(text)
    documents = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            doc = _Document(loader.construct_document(node), node.start_mark.line + 1)
            _index_lines(node, "", doc.lines, file, problems, set())
            documents.append(doc)
    finally:
        loader.dispose()
    return documents


def _index_lines(
    node: yaml.Node,
    path: str,
    lines: dict[str, int],
    file: str,
    problems: list[Problem],
    active: set[int],
) -> None:
    """Record the line of every field path; report duplicate keys, which YAML drops silently."""
    if id(node) in active:
        return  # a recursive alias
    lines.setdefault(path, node.start_mark.line + 1)
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            here = join(path, key)
            if key in seen and key != "<<":
                problems.append(
                    Problem(
                        file, f'duplicate key "{key}"', path=here, line=key_node.start_mark.line + 1
                    )
                )
            seen.add(key)
            lines.setdefault(here, key_node.start_mark.line + 1)
            _index_lines(value_node, here, lines, file, problems, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            _index_lines(child, item(path, i), lines, file, problems, active)
    active.discard(id(node))


def _yaml_problem(file: str, exc: yaml.YAMLError) -> Problem:
    line = None
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        line = exc.problem_mark.line + 1
    detail = exc.problem if isinstance(exc, yaml.MarkedYAMLError) and exc.problem else str(exc)
    return Problem(file, f"invalid YAML: {detail}", line=line)


def _label(data: dict[str, Any]) -> str:
    kind = data.get("kind") if isinstance(data.get("kind"), str) else "object"
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    cls = KINDS.get(str(kind))
    if not isinstance(name, str):
        return f"{kind} (unnamed)"
    if cls is not None and not cls.namespaced:
        return f"{kind} {name}"
    return f"{kind} {namespace if isinstance(namespace, str) else 'default'}/{name}"


def _normalize_timestamp(data: dict[str, Any]) -> None:
    """YAML turns an unquoted RFC 3339 timestamp into a datetime; keep it as text."""
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        return
    value = metadata.get("creationTimestamp")
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None and value.utcoffset() == datetime.timedelta(0):
            metadata["creationTimestamp"] = value.strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            metadata["creationTimestamp"] = value.isoformat()
    elif isinstance(value, datetime.date):
        metadata["creationTimestamp"] = value.isoformat()
