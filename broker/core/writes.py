"""What the store must make durable after a core operation.

The core never does I/O: each operation appends its intents here and the
transport hands the batch to the store. Rows are plain tuples, shaped like the
store's tables, so the writer thread can `executemany` them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# (rowid, priority, not_before_ms, published_ms, key, dedup hash, payload)
MessageRow = tuple[int, int, int, int, str | None, int | None, Any]


@dataclass(slots=True)
class Writes:
    queues: list[tuple[int, str, str, int]] = field(default_factory=list)  # id, name, json, created
    queues_deleted: list[int] = field(default_factory=list)
    # id, qid, name, settings json, start seq
    groups: list[tuple[int, int, str, str, int]] = field(default_factory=list)
    groups_deleted: list[int] = field(default_factory=list)
    messages: list[MessageRow] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)  # message rowids gone for every group
    # (qid, rowid): rows below are consumed and outside the dedup window: purge them
    deleted_below: list[tuple[int, int]] = field(default_factory=list)
    acks: list[tuple[int, int]] = field(default_factory=list)  # (gid, seq)
    counts: list[tuple[int, int, int, int]] = field(default_factory=list)  # gid, seq, count, vis
    counts_deleted: list[tuple[int, int]] = field(default_factory=list)
    dead: list[tuple[int, int, int, int, str]] = field(default_factory=list)  # gid, seq, n, at, why
    dead_deleted: list[tuple[int, int]] = field(default_factory=list)
    totals: dict[int, tuple[int, int]] = field(default_factory=dict)  # qid -> (published, next seq)
    group_totals: dict[int, int] = field(default_factory=dict)  # gid -> acked_total

    def __bool__(self) -> bool:
        return bool(
            self.queues or self.queues_deleted or self.groups or self.groups_deleted
            or self.messages or self.deleted or self.deleted_below or self.acks or self.counts
            or self.counts_deleted or self.dead or self.dead_deleted or self.totals
            or self.group_totals
        )
