"""Whether a status write would change what a person reading the resource notices.

The stats timer computes a whole status every period; writing it only when this says so
keeps an idle resource from costing the API server a PATCH per period. Counters that move
on their own (totals, ages, the autoscaler's activity clock) ride along with a write some
other change causes, and never cause one (no side effects).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Status keys that change without anything a person would act on: kept, but not a reason
# to write. publishedTotal only grows; oldestReadyAge grows by the second while messages
# wait (depth and lag say that already); idle.lastActiveTime moves on every active pass.
VOLATILE = frozenset({"publishedTotal", "oldestReadyAge"})


def _visible(status: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in status.items() if k not in VOLATILE}
    idle = out.get("idle")
    if isinstance(idle, Mapping):
        out["idle"] = {k: v for k, v in idle.items() if k != "lastActiveTime"}
    return out


def noticeable(current: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """True when merging `new` into `current` (a status patch merges) changes a visible field."""
    before = dict(current or {})
    return _visible({**before, **new}) != _visible(before)
