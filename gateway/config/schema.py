"""Strict structural validation of decoded YAML against the msgspec models of each kind.

The kind modules (``gateway.config.kinds``) describe every supported object as :class:`Model`
Structs; the loader (``gateway.config.loader``) calls :func:`validate` on each YAML document
and, when it reports nothing, converts the document with :func:`msgspec.convert`. Unlike
``msgspec.convert`` alone, :func:`validate` reports *every* problem in a document, names each
by its field path, and tells an unknown field apart from an upstream field that isthmus does
not implement (``Model.unsupported_fields``) and from an upstream enum value it does not
implement (``Model.unsupported_values``).

Paths look like ``spec.rules[0].matches[0].path.type``; map keys that are not identifiers are
quoted: ``metadata.annotations["isthmus.dev/lb-policy"]``.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
import msgspec.inspect as mi

FieldIssue = tuple[str, str]
"""A problem inside one object: (field path, message)."""

NOT_SUPPORTED = "not supported by isthmus"
NOT_YET = "not supported by isthmus yet"


class Model(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename="camel",
    forbid_unknown_fields=True,
    gc=False,
):
    """Base of every configuration model: fields are camelCase on the wire. Decoded trees
    hold no cycles, so they are left out of the cycle collector (``gc=False``): a
    controller's store holds tens of thousands of objects.

    ``unsupported_fields`` maps wire names of upstream fields we reject to the message;
    ``unsupported_values`` maps a wire field name to upstream enum values we reject.
    """

    unsupported_fields: ClassVar[Mapping[str, str]] = {}
    unsupported_values: ClassVar[Mapping[str, tuple[object, ...]]] = {}


def expect(description: str, *, pattern: str | None = None, max_length: int | None = None) -> Any:
    """String constraint whose failure reads ``"x" is not <description>``."""
    return msgspec.Meta(pattern=pattern, max_length=max_length, extra={"expect": description})


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def join(path: str, key: str) -> str:
    """The path of ``key`` inside the mapping at ``path``."""
    if not _IDENT.match(key):
        return f'{path}["{key}"]'
    return f"{path}.{key}" if path else key


def item(path: str, index: int) -> str:
    return f"{path}[{index}]"


@functools.cache
def _info(model: type[Model]) -> mi.Type:
    return mi.type_info(model)


def validate(value: object, model: type[Model], path: str = "") -> list[FieldIssue]:
    """Every structural problem of ``value`` as an instance of ``model``."""
    issues: list[FieldIssue] = []
    _check(value, _info(model), path, issues)
    return issues


def _check(value: object, t: mi.Type, path: str, issues: list[FieldIssue]) -> None:
    if isinstance(t, mi.Metadata):
        description = (t.extra or {}).get("expect")
        inner = t.type
        if description and isinstance(inner, mi.StrType) and isinstance(value, str):
            _check_length(len(value), inner.min_length, inner.max_length, "character", path, issues)
            if inner.pattern is not None and not re.search(inner.pattern, value):
                issues.append((path, f'"{value}" is not {description}'))
            return
        _check(value, inner, path, issues)
        return
    if isinstance(t, mi.UnionType):
        _check_union(value, t, path, issues)
        return
    if not _accepts(t, value):
        issues.append((path, f"expected {_describe_type(t)}, got {_describe_value(value, t)}"))
        return
    if isinstance(t, mi.StructType):
        assert isinstance(value, dict)
        _check_struct(value, t, path, issues)
    elif isinstance(t, mi.ListType | mi.VarTupleType):
        assert isinstance(value, list)
        _check_length(len(value), t.min_length, t.max_length, "item", path, issues)
        for i, element in enumerate(value):
            _check(element, t.item_type, item(path, i), issues)
    elif isinstance(t, mi.DictType):
        assert isinstance(value, dict)
        for key, element in value.items():
            if not isinstance(key, str):
                issues.append((path, f"keys must be strings, got {_describe_value(key, t)}"))
                continue
            _check(element, t.value_type, join(path, key), issues)
    elif isinstance(t, mi.LiteralType):
        pass  # _accepts checked membership
    elif isinstance(t, mi.StrType):
        assert isinstance(value, str)
        _check_length(len(value), t.min_length, t.max_length, "character", path, issues)
        if t.pattern is not None and not re.search(t.pattern, value):
            issues.append((path, f'"{value}" does not match the pattern {t.pattern}'))
    elif isinstance(t, mi.IntType | mi.FloatType):
        assert isinstance(value, int | float)
        _check_bounds(value, t, path, issues)


def _check_struct(
    value: dict[Any, Any], t: mi.StructType, path: str, issues: list[FieldIssue]
) -> None:
    model = t.cls
    fields = {f.encode_name: f for f in t.fields}
    unsupported: Mapping[str, str] = getattr(model, "unsupported_fields", {})
    bad_values: Mapping[str, tuple[object, ...]] = getattr(model, "unsupported_values", {})
    for key, element in value.items():
        if not isinstance(key, str):
            issues.append((path, f"field names must be strings, got {_describe_value(key, t)}"))
            continue
        here = join(path, key)
        if key in unsupported:
            issues.append((here, unsupported[key]))
        elif key not in fields:
            hint = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.75)
            suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
            issues.append((here, f"unknown field{suffix}"))
        elif _is_plain(element) and element in bad_values.get(key, ()):
            issues.append((here, f'"{element}" is {NOT_SUPPORTED}'))
        else:
            _check(element, fields[key].type, here, issues)
    for name, f in fields.items():
        if f.required and name not in value:
            issues.append((join(path, name), "required field is missing"))


def _is_plain(value: object) -> bool:
    return isinstance(value, str | int | float | bool)


def _check_union(value: object, t: mi.UnionType, path: str, issues: list[FieldIssue]) -> None:
    if value is None and t.includes_none:
        return
    choices = [alt for alt in t.types if not isinstance(alt, mi.NoneType)]
    for alt in choices:
        if _accepts(alt, value):
            _check(value, alt, path, issues)
            return
    wanted = " or ".join(_describe_type(alt) for alt in choices)
    issues.append((path, f"expected {wanted}, got {_describe_value(value, t)}"))


def _check_length(
    n: int, low: int | None, high: int | None, unit: str, path: str, issues: list[FieldIssue]
) -> None:
    if low is not None and n < low:
        issues.append((path, f"must have at least {low} {unit}{'s' if low != 1 else ''}"))
    if high is not None and n > high:
        issues.append((path, f"must have at most {high} {unit}{'s' if high != 1 else ''}"))


def _check_bounds(
    value: float, t: mi.IntType | mi.FloatType, path: str, issues: list[FieldIssue]
) -> None:
    if t.ge is not None and value < t.ge:
        issues.append((path, f"must be at least {t.ge}, got {value}"))
    if t.gt is not None and value <= t.gt:
        issues.append((path, f"must be greater than {t.gt}, got {value}"))
    if t.le is not None and value > t.le:
        issues.append((path, f"must be at most {t.le}, got {value}"))
    if t.lt is not None and value >= t.lt:
        issues.append((path, f"must be less than {t.lt}, got {value}"))


def _accepts(t: mi.Type, value: object) -> bool:
    """Whether ``value`` has the right Python type for ``t`` (constraints aside)."""
    if isinstance(t, mi.Metadata):
        return _accepts(t.type, value)
    if isinstance(t, mi.AnyType):
        return True
    if isinstance(t, mi.NoneType):
        return value is None
    if isinstance(t, mi.BoolType):
        return isinstance(value, bool)
    if isinstance(t, mi.IntType):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(t, mi.FloatType):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(t, mi.StrType):
        return isinstance(value, str)
    if isinstance(t, mi.LiteralType):
        return any(type(v) is type(value) and v == value for v in t.values)
    if isinstance(t, mi.ListType | mi.VarTupleType):
        return isinstance(value, list)
    if isinstance(t, mi.DictType | mi.StructType):
        return isinstance(value, dict)
    if isinstance(t, mi.UnionType):
        return any(_accepts(alt, value) for alt in t.types)
    raise TypeError(f"schema type {t!r} is not handled")  # a model uses an unexpected type


def _describe_type(t: mi.Type) -> str:
    if isinstance(t, mi.Metadata):
        return _describe_type(t.type)
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(_quote(v) for v in t.values)
    if isinstance(t, mi.UnionType):
        return " or ".join(_describe_type(a) for a in t.types if not isinstance(a, mi.NoneType))
    names: dict[type[mi.Type], str] = {
        mi.BoolType: "a boolean (true or false)",
        mi.IntType: "an integer",
        mi.FloatType: "a number",
        mi.StrType: "a string",
        mi.ListType: "a list",
        mi.VarTupleType: "a list",
        mi.DictType: "a mapping",
        mi.StructType: "a mapping",
        mi.AnyType: "any value",
        mi.NoneType: "null",
    }
    return names.get(type(t), type(t).__name__)


def _describe_value(value: object, wanted: mi.Type) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        text = f"the boolean {str(value).lower()}"
    elif isinstance(value, int | float):
        text = f"the number {value}"
    elif isinstance(value, str):
        text = f"the string {_quote(value)}"
    elif isinstance(value, datetime.date):
        text = f"the date {value.isoformat()}"
    elif isinstance(value, list):
        return "a list"
    elif isinstance(value, dict):
        return "a mapping"
    else:
        return type(value).__name__
    if not isinstance(value, str) and "a string" in _describe_type(wanted):
        text += " (quote it in YAML to keep it a string)"
    return text


def _quote(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)
