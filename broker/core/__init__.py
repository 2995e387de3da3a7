"""The broker's pure state machine: no I/O, no clock (time is passed in)."""

from ferry.broker.core.broker import Broker, DeadEntry, Incoming
from ferry.broker.core.dedup import DedupIndex
from ferry.broker.core.errors import (
    CoreError,
    GroupNotFoundError,
    MessageNotFoundError,
    QueueNotFoundError,
)
from ferry.broker.core.filters import matches
from ferry.broker.core.groups import Group, GroupFigures
from ferry.broker.core.leasing import Leased
from ferry.broker.core.queues import (
    PRIORITIES,
    ROWID_SHIFT,
    Queue,
    Restored,
    dedup_hash,
    rowid,
    split_rowid,
)
from ferry.broker.core.writes import ROW_ID, ROW_PAYLOAD, Kind, MessageRow, Writes

__all__ = [
    "PRIORITIES",
    "ROWID_SHIFT",
    "ROW_ID",
    "ROW_PAYLOAD",
    "Broker",
    "CoreError",
    "DeadEntry",
    "DedupIndex",
    "Group",
    "GroupFigures",
    "GroupNotFoundError",
    "Incoming",
    "Kind",
    "Leased",
    "MessageNotFoundError",
    "MessageRow",
    "Queue",
    "QueueNotFoundError",
    "Restored",
    "Writes",
    "dedup_hash",
    "matches",
    "rowid",
    "split_rowid",
]
