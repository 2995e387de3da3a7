"""Readable tables of broker figures (pure: models in, text out)."""

from __future__ import annotations

from collections.abc import Sequence

from ferry.broker.cli.lines import line_of
from ferry.broker.models import DeadList, GroupStats, MessageInfo, MessagePage, QueueStats

BODY_WIDTH = 60


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned text columns, numbers right-aligned, two spaces apart."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [
        bool(rows) and all(isinstance(r[i], int | float) for r in rows) for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in cells)])


def duration(ms: int) -> str:
    """1234 -> '1.2s', 192000 -> '3m12s', 0 -> '0s'."""
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def age(now_ms: int, then_ms: int) -> str:
    return duration(max(0, now_ms - then_ms)) + " ago"


def queues_table(queues: Sequence[QueueStats]) -> str:
    if not queues:
        return "no queues"
    rows = [
        [
            q.queue,
            q.messages,
            q.published_total,
            len(q.groups),
            sum(g.lag for g in q.groups),
            sum(g.dead for g in q.groups),
        ]
        for q in queues
    ]
    return table(["QUEUE", "MESSAGES", "PUBLISHED", "GROUPS", "LAG", "DEAD"], rows)


def groups_table(groups: Sequence[GroupStats]) -> str:
    if not groups:
        return "no consumer groups"
    rows = [
        [
            g.group,
            g.depth,
            g.in_flight,
            g.delayed,
            g.dead,
            g.lag,
            duration(g.oldest_ready_age_ms),
            g.acked_total,
            len(g.consumers),
        ]
        for g in groups
    ]
    headers = [
        "GROUP",
        "READY",
        "IN-FLIGHT",
        "DELAYED",
        "DEAD",
        "LAG",
        "OLDEST",
        "ACKED",
        "CONSUMERS",
    ]
    return table(headers, rows)


def queue_report(q: QueueStats) -> str:
    s = q.settings
    settings = [
        ("queue", q.queue),
        ("messages", f"{q.messages:,}"),
        ("published", f"{q.published_total:,}"),
        ("max message", f"{s.max_message_bytes:,} bytes"),
        ("retention", duration(s.retention_ms)),
        ("visibility timeout", duration(s.visibility_timeout_ms)),
        ("max deliveries", str(s.max_deliveries)),
        ("dedup window", duration(s.dedup_window_ms)),
        ("fair", "yes" if s.fair else "no"),
    ]
    return _pairs(settings) + "\n\n" + groups_table(q.groups)


def group_report(g: GroupStats, now_ms: int) -> str:
    s = g.settings
    b = s.nack_backoff
    pairs = [
        ("queue", g.queue),
        ("group", g.group),
        ("start at", s.start_at.value),
        (
            "visibility timeout",
            duration(s.visibility_timeout_ms) if s.visibility_timeout_ms else "queue's",
        ),
        ("max deliveries", str(s.max_deliveries) if s.max_deliveries else "queue's"),
        ("nack backoff", f"{duration(b.initial_ms)} x{b.multiplier:g} up to {duration(b.max_ms)}"),
    ]
    consumers = table(
        ["CONSUMER", "IN-FLIGHT", "LAST SEEN"],
        [[c.name, c.in_flight, age(now_ms, c.last_seen_ms)] for c in g.consumers],
    ) if g.consumers else "no consumers"
    return _pairs(pairs) + "\n\n" + groups_table([g]) + "\n\n" + consumers


def dead_table(page: DeadList, now_ms: int) -> str:
    if not page.messages:
        return "no dead letters"
    rows = [
        [d.id, d.delivery_count, age(now_ms, d.dead_at_ms), d.reason, clip(line_of(d.body))]
        for d in page.messages
    ]
    return _more(table(["ID", "DELIVERIES", "DEAD", "REASON", "BODY"], rows), page.next_cursor)


def messages_table(page: MessagePage, now_ms: int) -> str:
    """A browsed page: one line per message with its state in each group."""
    rows = [[m.id, age(now_ms, m.published_at_ms), m.priority, m.key or "",
             " ".join(f"{g.group}:{g.state.value}({g.delivery_count})" for g in m.groups),
             clip(line_of(m.body))] for m in page.messages]
    if rows:
        text = table(["ID", "PUBLISHED", "PRIORITY", "KEY", "GROUPS (STATE, DELIVERIES)", "BODY"],
                     rows)
    else:  # a page can be empty and not the last (each request scans a bounded stretch)
        text = "no matching messages" + (" on this page" if page.next_cursor else "")
    return _more(text, page.next_cursor)


def _more(text: str, cursor: str | None) -> str:
    """A page, and how to get the next one."""
    return f"{text}\n\nmore: --cursor {cursor}" if cursor else text


def message_report(m: MessageInfo, now_ms: int) -> str:
    pairs = [
        ("id", m.id),
        ("queue", m.queue),
        ("published", age(now_ms, m.published_at_ms)),
        ("key", m.key or "-"),
        ("priority", str(m.priority)),
        *((f"header {k}", v) for k, v in sorted(m.headers.items())),
        ("body", clip(line_of(m.body), 200)),
    ]
    if not m.groups:
        return _pairs(pairs)
    groups = table(
        ["GROUP", "STATE", "DELIVERIES"],
        [[g.group, g.state.value, g.delivery_count] for g in m.groups],
    )
    return _pairs(pairs) + "\n\n" + groups


def clip(text: str, width: int = BODY_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _pairs(pairs: Sequence[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k + ':':<{width + 1}}  {v}" for k, v in pairs)


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
