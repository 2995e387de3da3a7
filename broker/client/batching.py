"""Pure helpers for publishing: dedup ids and batches. No I/O."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import TypeVar

from ferry.broker.models import OutgoingMessage

T = TypeVar("T")


def with_dedup_ids(messages: Sequence[OutgoingMessage]) -> list[OutgoingMessage]:
    """Give every message lacking a dedup id a fresh one (uuid4), keeping those it has.

    Done once, before the first attempt, so every retry of a batch carries the same ids and
    the broker answers a repeat with the original message id instead of storing it twice.
    """
    return [
        m if m.dedup_id is not None else m.model_copy(update={"dedup_id": uuid.uuid4().hex})
        for m in messages
    ]


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items, in order."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]
