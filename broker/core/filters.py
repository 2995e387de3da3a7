"""Group filters on message headers: which messages a group gets at all.

Pure: the broker evaluates a group's filter when a message is published (the
headers are at hand then; the core keeps no headers afterwards) and the
transport evaluates it once more at delivery, for messages stored before the
group had its filter (published before the group was made, or before a change).
"""

from __future__ import annotations

from collections.abc import Mapping

from ferry.broker.models import HeaderFilter


def matches(f: HeaderFilter, headers: Mapping[str, str]) -> bool:
    """Every condition holds: each `match` header equals its value, each `prefix` header
    starts with its value (a missing header meets no condition)."""
    for name, value in f.match.items():
        if headers.get(name) != value:
            return False
    for name, start in f.prefix.items():
        got = headers.get(name)
        if got is None or not got.startswith(start):
            return False
    return True
