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
    return all(headers.get(name) == value for name, value in f.match.items()) and all(
        (got := headers.get(name)) is not None and got.startswith(start)
        for name, start in f.prefix.items())
