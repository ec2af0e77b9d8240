"""One configuration object validated for the store, with a fast path for valid objects.

Called by :class:`~federation.sources.store.ObjectStore` for every object of a
configuration kind. ``gateway.config.loader.load_objects`` validates a document in two
steps: a structural walk (``gateway.config.schema.validate``) that names every problem
with its field path, then ``msgspec.convert`` and the model's ``check()``. The walk costs
about ten times the conversion (0.45 s of CPU for 3,300 Services and their EndpointSlices,
which every controller paid at every start, three of them on one core in the federation
bench). Objects read from an API server are nearly always valid, so :func:`validate_one`
converts first. When the conversion succeeds, ``check()`` finds nothing and no field holds a
value isthmus refuses (``Model.unsupported_values``, which the conversion accepts), the
object is the one the loader builds; anything else goes through ``load_objects``, so every
problem is reported exactly as before.

Why a converted object is one the walk accepts: the walk refuses nothing the conversion
accepts except unsupported values (checked here), because every struct of the models
forbids unknown fields, has no tag, declares no field it lists as unsupported and uses only
the types the walk handles, and the conversion enforces the same types, literals, lengths,
patterns and bounds. :func:`assumption_breaks` lists what breaks those conditions (a test
asserts it finds nothing, so a model change that voids the fast path fails the suite).
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
import msgspec.inspect as mi

from gateway.config.errors import Problem
from gateway.config.kinds import KINDS, Object
from gateway.config.loader import load_objects
from gateway.config.resources import Origin
from gateway.config.schema import Model

Obj = dict[str, Any]

# The msgspec types the schema walk handles (gateway.config.schema._accepts).
_LEAVES = (
    mi.AnyType,
    mi.NoneType,
    mi.BoolType,
    mi.IntType,
    mi.FloatType,
    mi.StrType,
    mi.LiteralType,
)


def validate_one(obj: Obj, origin: str) -> tuple[Object | None, Origin | None, tuple[Problem, ...]]:
    """``obj`` as the loader would load it alone: (valid object, its origin, problems)."""
    fast = _converted(obj)
    if fast is not None:
        return fast, Origin(origin, None, {}), ()
    problems: list[Problem] = []
    loaded = load_objects([obj], origin, problems)
    if not loaded.objects:
        return None, None, tuple(problems)
    return loaded.objects[0], next(iter(loaded.origins.values())), tuple(problems)


def _converted(obj: Obj) -> Object | None:
    """The model object when ``obj`` is certainly valid; None when the loader must judge."""
    kind = obj.get("kind")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None or obj.get("apiVersion") not in cls.api_versions:
        return None
    try:
        converted = msgspec.convert(obj, cls)
    except msgspec.ValidationError:
        return None
    if converted.check() or _refused(converted):
        return None
    return converted


_IN_PROGRESS: set[type] = set()


@functools.cache
def _plan(cls: type) -> tuple[tuple[tuple[str, tuple[object, ...]], ...], tuple[str, ...]]:
    """For a struct class: (attribute, refused values) pairs, and the attributes whose type
    may hold another struct that has refused values somewhere inside (the others need no
    walk: an EndpointSlice's thousands of endpoints have nothing to refuse)."""
    fields = msgspec.structs.fields(cls)
    wire = {f.encode_name: f.name for f in fields}
    unsupported: dict[str, tuple[object, ...]] = dict(getattr(cls, "unsupported_values", {}))
    refused = tuple((wire[k], tuple(v)) for k, v in unsupported.items() if k in wire)
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    _IN_PROGRESS.add(cls)
    try:
        nested = tuple(
            f.name for f in info.fields if any(_needs_walk(c) for c in _structs_in(f.type))
        )
    finally:
        _IN_PROGRESS.discard(cls)
    return refused, nested


def _needs_walk(cls: type) -> bool:
    """Whether a value of ``cls`` may hold a refused value (a cycle counts as yes)."""
    if cls in _IN_PROGRESS:
        return True
    refused, nested = _plan(cls)
    return bool(refused or nested)


def _structs_in(t: mi.Type) -> list[type]:
    """The struct classes a value of type ``t`` may hold directly."""
    if isinstance(t, mi.StructType):
        return [t.cls]
    if isinstance(t, mi.Metadata):
        return _structs_in(t.type)
    if isinstance(t, mi.UnionType):
        return [c for a in t.types for c in _structs_in(a)]
    if isinstance(t, mi.ListType | mi.VarTupleType):
        return _structs_in(t.item_type)
    if isinstance(t, mi.DictType):
        return _structs_in(t.value_type)
    return []


def _refused(value: object) -> bool:
    """Whether a field anywhere in ``value`` holds one of its model's unsupported values."""
    if isinstance(value, msgspec.Struct):
        refused, nested = _plan(type(value))
        for attr, values in refused:
            held = getattr(value, attr)
            if isinstance(held, str | int | float | bool) and held in values:
                return True
        return any(_refused(getattr(value, attr)) for attr in nested)
    if isinstance(value, tuple | list):
        return any(_refused(v) for v in value)
    if isinstance(value, dict):
        return any(_refused(v) for v in value.values())
    return False


def assumption_breaks() -> list[str]:
    """What, in the models of every kind, would let the fast path accept an object that
    the schema walk refuses (see the module docstring); empty when the fast path is exact."""
    out: list[str] = []
    seen: set[type] = set()

    def walk(t: mi.Type, where: str) -> None:
        if isinstance(t, mi.StructType):
            cls = t.cls
            if cls in seen:
                return
            seen.add(cls)
            config = cls.__struct_config__
            name = cls.__qualname__
            if not issubclass(cls, Model):
                out.append(f"{name} ({where}) is not a gateway.config.schema.Model")
            if not config.forbid_unknown_fields:
                out.append(f"{name} accepts unknown fields")
            if config.tag is not None:
                out.append(f"{name} is tagged")
            declared = {f.encode_name for f in t.fields}
            for key in getattr(cls, "unsupported_fields", {}):
                if key in declared:
                    out.append(f"{name} declares its unsupported field {key}")
            for f in t.fields:
                walk(f.type, f"{name}.{f.encode_name}")
        elif isinstance(t, mi.Metadata):
            walk(t.type, where)
        elif isinstance(t, mi.UnionType):
            for alt in t.types:
                walk(alt, where)
        elif isinstance(t, mi.ListType | mi.VarTupleType):
            walk(t.item_type, where)
        elif isinstance(t, mi.DictType):
            walk(t.key_type, where)
            walk(t.value_type, where)
        elif not isinstance(t, _LEAVES):
            out.append(f"{where} has a type the schema walk does not handle: {t!r}")

    for kind, cls in sorted(KINDS.items()):
        walk(mi.type_info(cls), kind)
    return out
