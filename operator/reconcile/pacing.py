"""New resources first: a timer pass of a reconciled resource waits while new ones wait.

A timer pass (stats every 10 s, resync every 30 s) of a resource that is Ready already has
nothing to report that outranks making a new resource's children and queue. With 1,000
Queues created at once the stats passes of those already made were 100 a second, most of
the operator's work (20,692 passes against 1,000 creations in a burst on a loaded machine),
and every pass spent on them delayed the creations still waiting; a longer burst then
meant yet more passes. So while resources of the operator's kinds wait for their first
pass, a timer pass is skipped: at most a minute's worth of passes in a row, so stats and
drift repair of a resource are late by a minute at most, however long the backlog.
No side effects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFERRAL_SECONDS = 60.0  # the longest a timer pass waits for new resources


def awaits_first_pass(obj: Mapping[str, Any]) -> bool:
    """No pass has written its status yet, and it is not being deleted."""
    meta = obj.get("metadata") or {}
    return not ((obj.get("status") or {}).get("conditions")
                or meta.get("deletionTimestamp"))


def defer(waiting: int, deferred: int, interval: float) -> bool:
    """Whether a timer pass (of period `interval`, skipped `deferred` times in a row) waits
    for the `waiting` resources not reconciled yet."""
    return waiting > 0 and (deferred + 1) * interval <= DEFERRAL_SECONDS


@dataclass
class Pacing:
    """The resources of the operator's kinds waiting for their first pass (by uid), from
    their watch events, and the timer passes each reconciled one skipped in a row."""

    waiting: set[str] = field(default_factory=set)
    deferred: dict[tuple[str, str], int] = field(default_factory=dict)  # uid, timer

    def note(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        uid = str(obj["metadata"]["uid"])
        if event_type != "DELETED" and awaits_first_pass(obj):
            self.waiting.add(uid)
            return
        self.waiting.discard(uid)
        if event_type == "DELETED":
            self.deferred = {k: v for k, v in self.deferred.items() if k[0] != uid}

    def skip(self, obj: Mapping[str, Any], timer: str, interval: float) -> bool:
        """Whether this pass of `timer` (period `interval`) for `obj` is skipped."""
        slot = (str(obj["metadata"]["uid"]), timer)
        skipped = self.deferred.pop(slot, 0)
        if defer(len(self.waiting), skipped, interval):
            self.deferred[slot] = skipped + 1
            return True
        return False
