"""Whether a live object has drifted from what the operator would apply (no side effects).

Server-side apply owns only the fields a manifest lists, so a live object is in sync when
every field of the desired manifest holds the same value there; the API server's defaults
and other managers' fields are extra keys, not drift. Scalars compare as text, because the
API server stores an integer quantity such as `cpu: 1` as "1".
"""

from __future__ import annotations

from typing import Any


def differs(desired: Any, live: Any) -> bool:
    if isinstance(desired, dict):
        return not isinstance(live, dict) or any(
            differs(v, live[k]) if k in live else not _empty(v) for k, v in desired.items())
    if isinstance(desired, list):
        return (not isinstance(live, list) or len(desired) != len(live)
                or any(differs(d, x) for d, x in zip(desired, live, strict=True)))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is not live
    return str(desired) != str(live)


def _empty(value: Any) -> bool:
    """The API server drops empty maps and lists: their absence is no drift."""
    return value is None or value == {} or value == []
