"""Pure helpers for publishing: dedup ids and batches. No I/O."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TypeVar

from ferry.broker.models import OutgoingMessage

T = TypeVar("T")


def with_dedup_ids(messages: Sequence[OutgoingMessage]) -> list[OutgoingMessage]:
    """Give every message lacking a dedup id a fresh one, keeping those it has.

    Done once, before the first attempt, so every retry of a batch carries the same ids and
    the broker answers a repeat with the original message id instead of storing it twice.
    Ids are a random 128-bit prefix per call plus the message's index: as unique as a
    uuid4 each, at a fraction of the cost (this runs once per published message).
    """
    prefix = os.urandom(16).hex()
    return [
        m if m.dedup_id is not None else m.model_copy(update={"dedup_id": f"{prefix}-{i}"})
        for i, m in enumerate(messages)
    ]


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items, in order."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]
