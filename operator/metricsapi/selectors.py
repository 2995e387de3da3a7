"""Kubernetes label selectors (`labelSelector=` query strings), parsed and matched. Pure.

The grammar is the API server's: comma-separated requirements, each `k=v`, `k==v`,
`k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists) or `!k` (does not exist).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

_KEY = r"(?:[a-z0-9A-Z.\-]+/)?[a-zA-Z0-9]([a-zA-Z0-9_.\-]*[a-zA-Z0-9])?"
_VALUE = r"(?:[a-zA-Z0-9]([a-zA-Z0-9_.\-]*[a-zA-Z0-9])?)?"
_KEY_RE = re.compile(rf"^{_KEY}$")
_VALUE_RE = re.compile(rf"^{_VALUE}$")
_SET = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_COMPARE = re.compile(r"^(?P<key>[^=!\s]+)\s*(?P<op>==|=|!=)\s*(?P<value>.*)$")


class SelectorError(ValueError):
    """A labelSelector the API server would refuse too; the message names the bad part."""


class Operator(StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case Operator.EXISTS:
                return present
            case Operator.DOES_NOT_EXIST:
                return not present
            case Operator.EQUALS | Operator.IN:
                return value in self.values
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                return value not in self.values


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _split(text: str) -> list[str]:
    # Commas separate requirements, except inside the parentheses of a set.
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            raise SelectorError(f"unbalanced parentheses in {text!r}")
        current.append(char)
    if depth:
        raise SelectorError(f"unbalanced parentheses in {text!r}")
    parts.append("".join(current))
    return [p.strip() for p in parts]


def _key(key: str) -> str:
    if not _KEY_RE.match(key) or len(key.rsplit("/", 1)[-1]) > 63:
        raise SelectorError(f"invalid label key {key!r}")
    return key


def _value(value: str) -> str:
    if not _VALUE_RE.match(value) or len(value) > 63:
        raise SelectorError(f"invalid label value {value!r}")
    return value


def _requirement(term: str) -> Requirement:
    if not term:
        raise SelectorError("empty requirement (a stray comma?)")
    if found := _SET.match(term):
        values = frozenset(_value(v.strip()) for v in found["values"].split(","))
        op = Operator.IN if found["op"] == "in" else Operator.NOT_IN
        return Requirement(_key(found["key"]), op, values)
    if found := _COMPARE.match(term):
        op = Operator.NOT_EQUALS if found["op"] == "!=" else Operator.EQUALS
        return Requirement(_key(found["key"]), op, frozenset({_value(found["value"].strip())}))
    if term.startswith("!"):
        return Requirement(_key(term[1:].strip()), Operator.DOES_NOT_EXIST)
    return Requirement(_key(term), Operator.EXISTS)


def parse(text: str | None) -> Selector:
    """'' or None selects everything."""
    if not text or not text.strip():
        return Selector()
    return Selector(tuple(_requirement(term) for term in _split(text)))
