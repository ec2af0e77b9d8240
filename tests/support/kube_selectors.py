"""Label and field selectors for the Kubernetes API double (sans-IO, used by its store).

``parse_label_selector`` accepts the apiserver's string syntax: ``k``, ``!k``, ``k=v``, ``k==v``,
``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k>n``, ``k<n``, joined by commas (all must hold).
``parse_field_selector`` accepts ``path=v``, ``path==v``, ``path!=v`` joined by commas; the caller
says which paths the resource supports. Both raise :class:`SelectorError` with the reason on bad
input, which the HTTP app answers as 400 BadRequest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector that does not parse (answered as 400)."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # exists, !, =, !=, in, notin, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if not present:
            return False
        try:
            number = int(value)
        except ValueError:
            return False
        bound = int(self.values[0])
        return number > bound if self.op == "gt" else number < bound


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|>|<|[A-Za-z0-9_.\-/]+)")
_KEY = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9](/?)")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SelectorError(f"unable to parse requirement: unexpected character at {pos}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _check_key(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    if not name or len(name) > 63 or not _LABEL_VALUE.match(name):
        raise SelectorError(f'unable to parse requirement: invalid label key "{key}"')
    return key


def _check_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise SelectorError(f'unable to parse requirement: invalid label value: "{value}"')
    return value


_OPERATORS = {"=", "==", "!=", "in", "notin", ">", "<"}


def parse_label_selector(text: str) -> LabelSelector:
    tokens = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise SelectorError("unable to parse requirement: unexpected end of selector")
        tok = tokens[i]
        i += 1
        return tok

    while i < len(tokens):
        tok = take()
        if tok == "!":
            reqs.append(Requirement(_check_key(take()), "!"))
        elif tok in _OPERATORS or tok in ("(", ")", ","):
            raise SelectorError(f"unable to parse requirement: found '{tok}', expected: identifier")
        else:
            key = _check_key(tok)
            if i >= len(tokens) or tokens[i] == ",":
                reqs.append(Requirement(key, "exists"))
            else:
                op = take()
                if op in ("=", "==", "!="):
                    value = _value_token(tokens, i)
                    if value:
                        i += 1
                    reqs.append(
                        Requirement(key, "!=" if op == "!=" else "=", (_check_value(value),))
                    )
                elif op in ("in", "notin"):
                    if take() != "(":
                        raise SelectorError("unable to parse requirement: expected '('")
                    values: list[str] = []
                    while True:
                        item = take()
                        if item == ")":
                            break
                        if item == ",":
                            continue
                        values.append(_check_value(item))
                    reqs.append(Requirement(key, op, tuple(values)))
                elif op in (">", "<"):
                    bound = take()
                    if not re.fullmatch(r"-?[0-9]+", bound):
                        raise SelectorError(
                            f"unable to parse requirement: for 'Gt', 'Lt' operators, the value "
                            f"must be an integer: {bound}"
                        )
                    reqs.append(Requirement(key, "gt" if op == ">" else "lt", (bound,)))
                else:
                    raise SelectorError(
                        f"unable to parse requirement: found '{op}', expected: in, notin, =, "
                        "==, !=, gt, lt"
                    )
        if i < len(tokens):
            if tokens[i] != ",":
                raise SelectorError(
                    f"unable to parse requirement: found '{tokens[i]}', expected ','"
                )
            i += 1
            if i >= len(tokens):
                raise SelectorError("unable to parse requirement: trailing ','")
    return LabelSelector(tuple(reqs))


def _value_token(tokens: list[str], i: int) -> str:
    """The value after ``=``/``!=`` (an empty value is allowed: ``k=``)."""
    if i >= len(tokens) or tokens[i] == ",":
        return ""
    tok = tokens[i]
    if tok in _OPERATORS or tok in ("(", ")", "!"):
        raise SelectorError(f"unable to parse requirement: found '{tok}', expected: identifier")
    return tok


# -- field selectors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    value: str
    negate: bool

    def matches(self, obj: Mapping[str, Any]) -> bool:
        actual = field_value(obj, self.path)
        return (actual != self.value) if self.negate else (actual == self.value)


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(r.matches(obj) for r in self.requirements)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_field_selector(text: str, supported: Callable[[str], bool]) -> FieldSelector:
    reqs: list[FieldRequirement] = []
    for raw in _split_unescaped(text, ","):
        term = raw.strip()
        if not term:
            continue
        for op in ("!=", "==", "="):
            if op in term:
                path, value = term.split(op, 1)
                path = path.strip()
                if not supported(path):
                    raise SelectorError(f"field label not supported: {path}")
                reqs.append(FieldRequirement(path, value.strip(), op == "!="))
                break
        else:
            raise SelectorError(f"invalid selector: '{term}'; can't understand '{term}'")
    return FieldSelector(tuple(reqs))
