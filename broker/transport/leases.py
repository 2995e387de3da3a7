"""A connection's lease book: what one SSE stream or WebSocket subscription handed out.

Kept so a consumer whose connection drops gives its leases back at once instead of
after their visibility timeout, and pruned of ended leases so it stays small.
"""

from __future__ import annotations

import contextlib

from ferry.broker.core import CoreError, Leased
from ferry.broker.transport.runtime import Runtime, now_ms, queue_key


class LeaseBook:
    __slots__ = ("group", "leased", "max_in_flight", "queue", "rt")

    def __init__(self, rt: Runtime, queue: str, group: str, max_in_flight: int) -> None:
        self.rt, self.queue, self.group = rt, queue, group
        self.max_in_flight = max_in_flight
        self.leased: dict[int, int] = {}  # seq -> lease token

    def remember(self, leased: list[Leased]) -> None:
        for m in leased:
            self.leased[m.seq] = m.token
        if len(self.leased) > 4 * self.max_in_flight:
            self.prune()

    def prune(self) -> None:
        """Forget leases that ended (acked, nacked, expired)."""
        try:
            live = self.rt.core.group(self.queue, self.group).leases.inflight
        except CoreError:
            self.leased.clear()
            return
        for s in [s for s, t in self.leased.items() if s not in live or live[s].token != t]:
            del self.leased[s]

    def hand_back(self) -> None:
        """Nack what the closed connection still holds, so other consumers get it now."""
        if not self.leased:
            return
        rt = self.rt
        with contextlib.suppress(CoreError):  # the group is gone: nothing to hand back
            g = rt.core.group(self.queue, self.group)
            held = [g.receipt(s, t) for s, t in self.leased.items()
                    if s in g.leases.inflight and g.leases.inflight[s].token == t]
            if held:
                rt.core.nack(self.queue, self.group, held, 0, now_ms())
                rt.flush(wait=False)
                rt.signals.notify(queue_key(g.queue.qid))
        self.leased.clear()
