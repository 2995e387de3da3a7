"""The plugin's tables (pure: broker figures in, text out), built on the ferry CLI's helpers."""

from __future__ import annotations

from collections.abc import Sequence

from ferry.broker.cli.lines import line_of
from ferry.broker.cli.tables import age, clip, duration, table
from ferry.broker.models import MessagePage, QueueStats


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


def peeked(page: MessagePage, now_ms: int) -> str:
    if not page.messages:
        return "no stored messages"
    rows = [[m.id, age(now_ms, m.published_at_ms), m.priority, m.key or "",
             " ".join(f"{g.group}:{g.state.value}({g.delivery_count})" for g in m.groups),
             clip(line_of(m.body))] for m in page.messages]
    text = table(["ID", "PUBLISHED", "PRIORITY", "KEY", "GROUPS (STATE, DELIVERIES)", "BODY"],
                 rows)
    if page.next_cursor:
        text += f"\n\nmore: --cursor {page.next_cursor}"
    return text
