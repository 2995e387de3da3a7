"""The plugin's tables (pure: broker figures in, text out), built on the ferry CLI's helpers."""

from __future__ import annotations

from collections.abc import Sequence

from ferry.broker.cli.tables import duration, table
from ferry.broker.models import QueueStats


def top_queues(rows: Sequence[tuple[str, str, QueueStats | str]]) -> str:
    """One line per Queue: (namespace, name, live stats or why they could not be read)."""
    if not rows:
        return "no Queues"
    out: list[list[object]] = []
    for namespace, name, stats in rows:
        if isinstance(stats, str):
            out.append([namespace, name, "-", "-", "-", "-", "-", "-", "-", stats])
            continue
        groups = stats.groups
        out.append([
            namespace, name, stats.messages, sum(g.in_flight for g in groups),
            sum(g.lag for g in groups), sum(g.dead for g in groups),
            sum(len(g.consumers) for g in groups), len(groups),
            duration(max((g.oldest_ready_age_ms for g in groups), default=0)), "",
        ])
    return table(["NAMESPACE", "QUEUE", "MESSAGES", "IN-FLIGHT", "LAG", "DEAD", "CONSUMERS",
                  "GROUPS", "OLDEST", "PROBLEM"], out)
