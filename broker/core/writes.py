"""What the store must make durable after core operations, in order.

The core never does I/O: each operation appends intents here and the
transport hands the batch to the store. An intent is a kind plus rows shaped
like the store's tables, so the committer can insert them as they are;
consecutive intents of one kind (also across requests of one group commit)
become one multi-row statement. Running totals are absolute values, kept
apart and written once per commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import IntEnum
from typing import Any

# (rowid, priority, not_before_ms, published_ms, key, dedup hash, payload): a plain tuple,
# built once per published message and inserted as it is; a NamedTuple costs far more
# to build. Layers that read a field name its position instead of writing a number.
MessageRow = tuple[int, int, int, int, str | None, int | None, Any]
ROW_ID, ROW_PAYLOAD = 0, 6
Row = tuple[Any, ...]


class Kind(IntEnum):
    QUEUE = 1  # (id, name, settings json, created_ms)
    QUEUE_DELETED = 2  # (id,)
    GROUP = 3  # (id, qid, name, settings json, start seq)
    GROUP_DELETED = 4  # (id,)
    MESSAGE = 5  # MessageRow
    CONSUMED = 6  # (rowid,): gone for every group; a tombstone keeps its dedup id
    PURGE_BELOW = 7  # (qid, rowid): rows below are consumed and outside the dedup window
    ACK = 8  # (gid, seq)
    COUNT = 9  # (gid, seq, deliveries, visible_at)
    COUNT_DELETED = 10  # (gid, seq)
    DEAD = 11  # (gid, seq, deliveries, dead_at, reason)
    DEAD_DELETED = 12  # (gid, seq)
    PRIORITY = 13  # (priority, doc, rowid): a stored message's new priority and document


class Writes:
    __slots__ = ("group_totals", "ops", "totals")

    def __init__(self) -> None:
        self.ops: list[tuple[Kind, list[Row]]] = []
        self.totals: dict[int, tuple[int, int]] = {}  # qid -> (published_total, next_seq)
        self.group_totals: dict[int, int] = {}  # gid -> acked_total

    def add(self, kind: Kind, row: Row) -> None:
        ops = self.ops
        if ops and ops[-1][0] is kind:
            ops[-1][1].append(row)
        else:
            ops.append((kind, [row]))

    def extend(self, kind: Kind, rows: list[Row]) -> None:
        if rows:
            ops = self.ops
            if ops and ops[-1][0] is kind:
                ops[-1][1].extend(rows)
            else:
                ops.append((kind, rows))

    def rows(self, kind: Kind) -> list[Row]:
        return [row for k, rows in self.ops if k is kind for row in rows]

    def __bool__(self) -> bool:
        return bool(self.ops or self.totals or self.group_totals)


Totals = dict[int, tuple[int, int]]
# One request's writes as a store applies them: (ops as (kind, rows), queue totals, group
# totals); a Writes' fields, or the same crossing the committer's pipe with int kinds.
Parts = tuple[Sequence[tuple[int, list[Row]]], Mapping[int, tuple[int, int]], Mapping[int, int]]


def merged(batch: Iterable[Parts]) -> tuple[list[tuple[int, list[Row]]], Totals, dict[int, int]]:
    """A group commit's writes as one list: consecutive ops of one kind (also across
    requests) joined into one run, in order, so each run is few statements; the totals
    are absolute, so the last request's value wins."""
    runs: list[tuple[int, list[Row]]] = []
    totals: Totals = {}
    group_totals: dict[int, int] = {}
    for ops, w_totals, w_group_totals in batch:
        for kind, rows in ops:
            if runs and runs[-1][0] == kind:
                runs[-1][1].extend(rows)
            else:
                runs.append((kind, list(rows)))
        totals.update(w_totals)
        group_totals.update(w_group_totals)
    return runs, totals, group_totals
