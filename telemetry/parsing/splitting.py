"""Splitting one input between N streamers: each row has exactly one owner."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence


@functools.lru_cache(maxsize=65536)  # a GPU's rows share a key: hash each key once
def owner(key: str, count: int) -> int:
    """Which of `count` instances owns `key`: stable across processes and Python versions
    (unlike hash()), so independently started streamers agree without talking."""
    if count < 1:
        raise ValueError("instance count must be >= 1")
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def split_key(fields: Sequence[str], positions: Mapping[str, int] | None) -> str:
    """Rows of one GPU go to one streamer (keeps each GPU's samples in order);
    a record too broken to name its GPU is keyed by its text, so it still has one owner
    (and is reported as bad exactly once)."""
    if positions is not None:
        i = positions["uuid"]
        if i < len(fields) and fields[i].strip():
            return "uuid:" + fields[i].strip()
    return "raw:" + "\x1f".join(fields)


def is_mine(
    fields: Sequence[str], positions: Mapping[str, int] | None, index: int, count: int
) -> bool:
    return owner(split_key(fields, positions), count) == index
