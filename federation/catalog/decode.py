"""Request bodies read the way Consul's Go code reads them (``encoding/json``).

- Only the first JSON value counts; anything after it is ignored.
- Field names match case-insensitively (py-consul sends ``node``, ``address``, ``serviceid``).
- Unknown fields are ignored, as Go ignores them for these request types; ``null`` leaves a
  field at its zero value.
- A value of the wrong JSON type fails the whole body with Go's message,
  ``json: cannot unmarshal string into Go struct field RegisterRequest.Service.Port of type
  int``; the HTTP layer answers 400 ``Request decode failed: <that>``.

A ``Schema`` names each field with its canonical spelling and kind; ``decode`` returns a dict
with canonical keys holding only the fields that were present and not null.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class DecodeError(ValueError):
    """Go's decode error text (without the ``Request decode failed:`` prefix)."""


@dataclass(frozen=True, slots=True)
class Schema:
    go_type: str  # e.g. "structs.RegisterRequest"
    fields: Mapping[str, Kind]
    # Lowercased field name -> canonical one, built once (not per decoded object).
    lowered: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lowered", {name.lower(): name for name in self.fields})

    @property
    def short(self) -> str:
        return self.go_type.rpartition(".")[2]


@dataclass(frozen=True, slots=True)
class ListOf:
    item: Kind


@dataclass(frozen=True, slots=True)
class MapOf:
    item: Kind


# Scalars: "string", "int", "uint64", "bool", and "any" (kept as decoded, no check).
Kind = str | Schema | ListOf | MapOf


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_json(body: bytes) -> Any:
    """The first JSON value of ``body``; an empty body is Go's ``EOF``."""
    text = body.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        raise DecodeError("EOF")
    try:
        value, _end = _DECODER.raw_decode(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text):
            raise DecodeError("unexpected EOF") from None
        raise DecodeError(
            f"invalid character {text[exc.pos]!r} at offset {exc.pos + 1}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise DecodeError(str(exc)) from None
    return value


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {json.dumps(value)}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _go_type(kind: Kind) -> str:
    if isinstance(kind, Schema):
        return kind.go_type
    if isinstance(kind, ListOf):
        return "[]" + _go_type(kind.item)
    if isinstance(kind, MapOf):
        return "map[string]" + _go_type(kind.item)
    return kind


def decode(value: object, schema: Schema) -> dict[str, Any]:
    """Decode a top-level object against ``schema``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DecodeError(
            f"json: cannot unmarshal {_json_type(value).split(' ')[0]} into Go value of type "
            f"{schema.go_type}"
        )
    return _object(value, schema, schema.short)


def _object(raw: dict[str, Any], schema: Schema, path: str) -> dict[str, Any]:
    fields, lowered = schema.fields, schema.lowered
    out: dict[str, Any] = {}
    for key, item in raw.items():
        canon = key if key in fields else lowered.get(key.lower())
        if canon is None or item is None:
            continue
        out[canon] = _value(item, fields[canon], path, canon)
    return out


def _mismatch(value: object, kind: Kind, path: str) -> DecodeError:
    return DecodeError(
        f"json: cannot unmarshal {_json_type(value).split(' ')[0]} into Go struct field "
        f"{path} of type {_go_type(kind)}"
    )


def _value(value: object, kind: Kind, parent: str, name: str) -> Any:
    """``value`` as the field ``name`` of the object at ``parent`` (the field's path,
    ``parent.name``, is only spelled out for an error or a nested object)."""
    if isinstance(kind, str):
        if kind == "string":
            if not isinstance(value, str):
                raise _mismatch(value, kind, f"{parent}.{name}")
            return value
        if kind == "any":
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise _mismatch(value, kind, f"{parent}.{name}")
            return value
        if kind in ("int", "uint64"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise _mismatch(value, kind, f"{parent}.{name}")
            low, high = (0, (1 << 64) - 1) if kind == "uint64" else (-(1 << 63), (1 << 63) - 1)
            if not low <= value <= high:
                raise _mismatch(value, kind, f"{parent}.{name}")
            return value
        raise AssertionError(f"unknown kind {kind!r}")
    if isinstance(kind, Schema):
        if not isinstance(value, dict):
            raise _mismatch(value, kind, f"{parent}.{name}")
        return _object(value, kind, f"{parent}.{name}")
    if isinstance(kind, ListOf):
        if not isinstance(value, list):
            raise _mismatch(value, kind, f"{parent}.{name}")
        return [None if v is None else _value(v, kind.item, parent, name) for v in value]
    if not isinstance(value, dict):  # MapOf
        raise _mismatch(value, kind, f"{parent}.{name}")
    return {k: None if v is None else _value(v, kind.item, parent, name) for k, v in value.items()}
