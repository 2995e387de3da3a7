"""Splitting one input between N streamers: each row has exactly one owner."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence

KEPT = 65536  # owners kept by Split: a fleet's GPUs


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


class Split:
    """is_mine for one input's records, kept per GPU uuid text: a GPU's rows repeat it
    on every row, and each streamer asks for every record of the file (both hashing
    and stripping it each time were a fifth of a streamer's loop; bench/README.md)."""

    def __init__(self, positions: Mapping[str, int], index: int, count: int) -> None:
        self.positions, self.index, self.count = positions, index, count
        self._uuid = positions["uuid"]
        self._known: dict[str, bool] = {}

    def mine(self, fields: Sequence[str]) -> bool:
        raw = fields[self._uuid] if self._uuid < len(fields) else ""
        known = self._known.get(raw)
        if known is None:
            known = is_mine(fields, self.positions, self.index, self.count)
            if raw.strip():  # keyed by its uuid: any record with this text has this owner
                if len(self._known) >= KEPT:
                    self._known.clear()
                self._known[raw] = known
        return known
