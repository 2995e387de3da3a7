"""Whether a live object has drifted from what the operator would apply (no side effects).

Server-side apply owns only the fields a manifest lists, so a live object is in sync when
every field of the desired manifest holds the same value there; the API server's defaults
and other managers' fields are extra keys, not drift. Scalars compare as text, because the
API server stores an integer quantity such as `cpu: 1` as "1"; quantities compare by value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def differs(desired: Any, live: Any) -> bool:
    return difference(desired, live) is not None


# Metadata every write moves, whoever makes it (a controller's status update too).
_BOOKKEEPING = frozenset({"resourceVersion", "managedFields"})


def only_status_moved(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Two copies of one object that differ at most in status and bookkeeping metadata: an
    event that cannot have made it drift (a manifest never lists status). A StatefulSet's
    or a budget's controller updates its status several times for each new Queue."""
    def kept(obj: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        meta = obj.get("metadata") or {}
        return ({k: v for k, v in obj.items() if k not in ("status", "metadata")},
                {k: v for k, v in meta.items() if k not in _BOOKKEEPING})
    return kept(before) == kept(after)


def difference(desired: Any, live: Any, where: str = "") -> str | None:
    """The path of the first desired field the live object does not hold, or None."""
    if isinstance(desired, dict):
        return _map_difference(desired, live, where)
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return where or "."
        for i, (d, x) in enumerate(zip(desired, live, strict=True)):
            found = difference(d, x, f"{where}[{i}]")
            if found is not None:
                return found
        return None
    if isinstance(desired, bool) or isinstance(live, bool):
        return None if desired is live else where
    if str(desired) == str(live):
        return None
    a, b = _quantity(str(desired)), _quantity(str(live))
    return None if a is not None and a == b else where


def _map_difference(desired: dict[str, Any], live: Any, where: str) -> str | None:
    if not isinstance(live, dict):
        return where or "."
    for k, v in desired.items():
        if k not in live:
            if not _empty(v):
                return f"{where}.{k}"
            continue
        found = difference(v, live[k], f"{where}.{k}")
        if found is not None:
            return found
    return None


_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|"
                       r"[eE][+-]?[0-9]+)?$")
_SUFFIX = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
           "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
           "P": Decimal("1e15"), "E": Decimal("1e18"), "Ki": Decimal(2**10),
           "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
           "Pi": Decimal(2**50), "Ei": Decimal(2**60)}


def _quantity(text: str) -> Decimal | None:
    """A Kubernetes quantity's value: the API server stores "1000" as "1k", "0.5" as
    "500m", so two spellings of one quantity are no drift."""
    match = _QUANTITY.match(text)
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return Decimal(number) * Decimal(10) ** int(suffix[1:])
    return Decimal(number) * _SUFFIX[suffix]


def _empty(value: Any) -> bool:
    """The API server drops empty maps and lists: their absence is no drift."""
    return value is None or value == {} or value == []
