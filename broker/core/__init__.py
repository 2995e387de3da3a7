"""The broker's pure state machine: no I/O, no clock (time is passed in)."""

from ferry.broker.core.broker import Broker, DeadEntry, Incoming
from ferry.broker.core.errors import (
    CoreError,
    GroupNotFoundError,
    MessageNotFoundError,
    QueueNotFoundError,
)
from ferry.broker.core.groups import Group, GroupFigures, Leased
from ferry.broker.core.queues import PRIORITIES, Queue, rowid, split_rowid
from ferry.broker.core.writes import MessageRow, Writes

__all__ = [
    "PRIORITIES",
    "Broker",
    "CoreError",
    "DeadEntry",
    "Group",
    "GroupFigures",
    "GroupNotFoundError",
    "Incoming",
    "Leased",
    "MessageNotFoundError",
    "MessageRow",
    "Queue",
    "QueueNotFoundError",
    "Writes",
    "rowid",
    "split_rowid",
]
