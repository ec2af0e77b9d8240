"""The store's validation (``federation.sources.validation``) answers exactly what
``gateway.config.loader.load_objects`` answers for one object: the same model object, origin
and problems, for valid documents and for every mutation of them, while skipping the schema
walk for valid ones.

The documents are the YAML ones of the loader's own tests and of ``examples/`` (harvested
from their string literals, so new loader tests widen this one), each also mutated leaf by
leaf (wrong types, out-of-range numbers, values isthmus refuses, unknown and missing fields)."""

from __future__ import annotations

import ast
import copy
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec.inspect as mi
import pytest
import yaml

from federation.sources import validation
from federation.sources.validation import assumption_breaks, validate_one
from gateway.config.errors import Problem
from gateway.config.kinds import KINDS
from gateway.config.loader import load_objects
from tests.federation.sources.conftest import endpoint_slice, service

ROOT = Path(__file__).resolve().parents[3]
Obj = dict[str, Any]


def _literals(path: Path) -> Iterator[str]:
    if path.suffix == ".yaml":
        yield path.read_text()
        return
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "kind:" in node.value:
            yield node.value


def _corpus() -> list[Obj]:
    files = sorted((ROOT / "tests" / "gateway" / "config").glob("*.py"))
    files += sorted((ROOT / "examples").rglob("*.yaml"))
    docs: list[Obj] = []
    for path in files:
        for text in _literals(path):
            try:
                found = list(yaml.safe_load_all(textwrap.dedent(text)))
            except yaml.YAMLError:
                continue
            docs += [d for d in found if isinstance(d, dict) and isinstance(d.get("kind"), str)]
    return [*docs, service("web"), endpoint_slice("web", ("10.0.0.1", "10.0.0.2"))]


CORPUS = _corpus()


def _refused_values() -> list[object]:
    """Every value some model lists as unsupported."""
    out: list[object] = []
    seen: set[type] = set()

    def walk(t: mi.Type) -> None:
        if isinstance(t, mi.StructType) and t.cls not in seen:
            seen.add(t.cls)
            for values in getattr(t.cls, "unsupported_values", {}).values():
                out.extend(v for v in values if v not in out)
            for f in t.fields:
                walk(f.type)
        elif isinstance(t, mi.Metadata):
            walk(t.type)
        elif isinstance(t, mi.UnionType):
            for alt in t.types:
                walk(alt)
        elif isinstance(t, mi.ListType | mi.VarTupleType):
            walk(t.item_type)
        elif isinstance(t, mi.DictType):
            walk(t.value_type)

    for cls in KINDS.values():
        walk(mi.type_info(cls))
    return out


SUBSTITUTES: list[object] = [None, True, 0, -1, 70000, 1.5, "", "x", "a" * 300, [], {}]
SUBSTITUTES += _refused_values()


def _mutations(doc: Obj) -> Iterator[Obj]:
    """Copies of ``doc`` with one change each: a leaf replaced, a key dropped or added."""

    def paths(value: Any, here: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        if isinstance(value, dict):
            yield (*here, "+")
            for key, inner in value.items():
                yield (*here, key, "-")
                yield from paths(inner, (*here, key))
        elif isinstance(value, list):
            for i, inner in enumerate(value):
                yield from paths(inner, (*here, i))
        elif here:
            yield here

    for path in paths(doc, ()):
        if path[-1] in ("+", "-"):
            copied = copy.deepcopy(doc)
            parent = copied
            for step in path[:-2] if path[-1] == "-" else path[:-1]:
                parent = parent[step]
            if path[-1] == "+":
                parent["bogusField"] = 1
            else:
                del parent[path[-2]]
            yield copied
            continue
        for substitute in SUBSTITUTES:
            copied = copy.deepcopy(doc)
            parent = copied
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = copy.deepcopy(substitute)
            yield copied


def _reference(doc: Obj) -> tuple[Any, Any, list[str]]:
    problems: list[Problem] = []
    loaded = load_objects([copy.deepcopy(doc)], "cluster", problems)
    origin = next(iter(loaded.origins.values())) if loaded.origins else None
    return (loaded.objects[0] if loaded.objects else None), origin, [str(p) for p in problems]


def _ours(doc: Obj) -> tuple[Any, Any, list[str]]:
    valid, origin, problems = validate_one(copy.deepcopy(doc), "cluster")
    return valid, origin, [str(p) for p in problems]


def test_the_models_keep_what_the_fast_path_relies_on() -> None:
    assert assumption_breaks() == []


def test_the_corpus_covers_most_kinds_valid_and_invalid() -> None:
    kinds = {d["kind"] for d in CORPUS}
    assert len(CORPUS) >= 50 and len(kinds & set(KINDS)) >= 12
    answers = [_reference(d)[0] is not None for d in CORPUS]
    assert sum(answers) >= 20 and answers.count(False) >= 10


@pytest.mark.parametrize("index", range(len(CORPUS)))
def test_same_answer_as_the_loader_for_a_document_and_its_mutations(index: int) -> None:
    doc = CORPUS[index]
    for candidate in [doc, *_mutations(doc)]:
        assert _ours(candidate) == _reference(candidate), candidate


def test_valid_objects_skip_the_schema_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_loader(*args: object, **kwargs: object) -> None:
        raise AssertionError("the loader was called for a valid object")

    monkeypatch.setattr(validation, "load_objects", no_loader)
    valid, origin, problems = validate_one(service("web"), "kubernetes x")
    assert valid is not None and valid.name == "web"
    assert origin is not None and origin.file == "kubernetes x" and problems == ()


def test_a_refused_value_goes_to_the_loader_for_its_problem() -> None:
    udp = service("web")
    udp["spec"]["ports"][0]["protocol"] = "UDP"
    valid, _origin, problems = validate_one(udp, "cluster")
    assert valid is None
    assert [p.path for p in problems] == ["spec.ports[0].protocol"]
    assert "not supported by isthmus" in problems[0].message
