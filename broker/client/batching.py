"""Pure helpers for publishing: dedup ids and batches. No I/O."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from pydantic import TypeAdapter

from ferry.broker.models import OutgoingMessage

T = TypeVar("T")
_MESSAGES: TypeAdapter[list[OutgoingMessage]] = TypeAdapter(list[OutgoingMessage])


def dedup_prefix() -> str:
    """A random 128-bit prefix; `{prefix}-{index}` is as unique as a uuid4 per message."""
    return os.urandom(16).hex()


def with_dedup_ids(
    messages: Sequence[OutgoingMessage], prefix: str | None = None, start: int = 0
) -> list[OutgoingMessage]:
    """Give every message lacking a dedup id `{prefix}-{start + index}`, keeping those it has.

    Done once per publish, before the first attempt (or derived again from the same
    prefix), so every retry of a batch carries the same ids and the broker answers a
    repeat with the original message id instead of storing it twice.
    """
    prefix = prefix or dedup_prefix()
    return [
        m if m.dedup_id is not None
        else m.model_copy(update={"dedup_id": f"{prefix}-{start + i}"})
        for i, m in enumerate(messages)
    ]


def wire_messages(
    messages: Sequence[OutgoingMessage], prefix: str, start: int = 0
) -> list[dict[str, Any]]:
    """The JSON documents of `with_dedup_ids(messages, prefix, start)`, without a model copy
    per message (the copy cost more than the rest of a WebSocket publish together)."""
    docs: list[dict[str, Any]] = _MESSAGES.dump_python(list(messages), mode="json")
    for i, doc in enumerate(docs, start):
        if doc["dedup_id"] is None:
            doc["dedup_id"] = f"{prefix}-{i}"
    return docs


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items, in order."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]
