"""A queue's compact message metadata: parallel arrays indexed by sequence.

No Python object per message: a million stored messages cost ~25 bytes each
here (priority, publish time, key id, gone flag, ready-list entry). Bodies
never enter the core; the store keeps them.
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ferry.broker.core.dedup import DedupIndex
from ferry.broker.models import QueueSettings

if TYPE_CHECKING:
    from ferry.broker.core.groups import Group

PRIORITIES = 10
ROWID_SHIFT = 40  # a message's store key and wire id: queue id << 40 | sequence
_TRIM_CHUNK = 65_536


def dedup_hash(dedup_id: str) -> int:
    """A stable 64-bit hash of a dedup id: stored with the message, indexed in memory."""
    digest = hashlib.blake2b(dedup_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def rowid(qid: int, seq: int) -> int:
    return (qid << ROWID_SHIFT) | seq


def split_rowid(value: int) -> tuple[int, int]:
    return value >> ROWID_SHIFT, value & ((1 << ROWID_SHIFT) - 1)


@dataclass(slots=True)
class Restored:
    """A queue's stored messages as columns, in seq order (what the store reads back)."""

    seqs: array[int] = field(default_factory=lambda: array("q"))
    priorities: array[int] = field(default_factory=lambda: array("b"))
    published: array[int] = field(default_factory=lambda: array("q"))
    consumed: list[int] = field(default_factory=list)  # consumed rows of older stores (doc NULL)
    keys: list[tuple[int, str]] = field(default_factory=list)
    delayed: list[tuple[int, int]] = field(default_factory=list)  # seq, not-before




class Queue:
    def __init__(self, qid: int, name: str, settings: QueueSettings, created_ms: int) -> None:
        self.qid = qid
        self.name = name
        self.settings = settings
        self.created_ms = created_ms
        self.groups: dict[str, Group] = {}
        self.published_total = 0
        self.dropped_total = 0  # let go by the drop_oldest overflow policy (since start)
        self.cancelled_total = 0  # cancelled, or purged from a queue without groups (since start)
        self.live = 0  # stored: not yet gone for every group
        # Sequences [base, next_seq) are described by the arrays below, at index seq - arr_base.
        self.next_seq = 1
        self.base = 1  # every seq below is gone
        self.arr_base = 1
        self.durable_next = 1  # seqs from here on are not yet fsynced: never delivered
        self.purged = 1  # the store holds no rows below this seq (not even tombstones)
        self.prio = array("b")
        self.published = array("q")
        self.key_id = array("i")
        self.gone = bytearray()
        self.keys: dict[str, int] = {}
        self.key_names: list[str | None] = []
        # Per priority, every seq in arrival order; ready_off[p] entries were trimmed off the front.
        self.ready: list[array[int]] = [array("q") for _ in range(PRIORITIES)]
        self.ready_off = [0] * PRIORITIES
        self.not_before: dict[int, int] = {}  # delayed messages only
        # Messages whose priority changed: seq -> priority now. They stay in the ready list
        # of their published priority (group cursors index it); groups hold them instead.
        self.moved: dict[int, int] = {}
        # Seqs cancelled (DELETE, purge) at or above base: gone, yet still in the ready lists
        # ahead of some group's cursor, where depth would count them (Group.figures).
        self.cancelled: set[int] = set()
        self.dedup = DedupIndex()  # dedup_hash(id) -> seq, within the dedup window
        self.dedup_ready = True  # False while a restart is still reading stored dedup ids
        self.loading = False  # a restart is still reading stored messages (see begin_restore)
        self.loaded_next = 1  # while loading: seqs below are read back, the rest unknown
        self.stored_next = 1  # while loading: where the stored seqs end
        self.tail: list[array[int]] = [array("q") for _ in range(PRIORITIES)]

    # --- appending ---------------------------------------------------------

    def intern_key(self, key: str | None) -> int:
        if key is None:
            return -1
        kid = self.keys.get(key)
        if kid is None:
            kid = self.keys[key] = len(self.key_names)
            self.key_names.append(key)
        return kid

    def append(self, priority: int, published_ms: int, not_before_ms: int, key: str | None) -> int:
        seq = self.next_seq
        self.next_seq = seq + 1
        self.prio.append(priority)
        self.published.append(published_ms)
        self.key_id.append(self.intern_key(key))
        self.gone.append(0)
        (self.tail if self.loading else self.ready)[priority].append(seq)
        if not_before_ms > published_ms:
            self.not_before[seq] = not_before_ms
        self.live += 1
        return seq

    # --- restoring from the store, chunk by chunk while already serving -------------

    def begin_restore(self, first_seq: int | None, next_seq: int) -> None:
        """Size the arrays for stored seqs [first_seq, next_seq), all unknown (gone) so far.

        Until `finish_restore`, chunks arrive in seq order; messages published
        meanwhile wait in `tail` so that ready lists stay sorted.
        """
        self.next_seq = self.durable_next = self.stored_next = next_seq
        if first_seq is None or first_seq >= next_seq:
            self.base = self.arr_base = self.loaded_next = next_seq
            return
        span = next_seq - first_seq
        self.base = self.arr_base = self.loaded_next = first_seq
        self.prio = array("b", bytes(span))
        self.published = array("q", bytes(8 * span))
        self.key_id = array("i", [-1]) * span
        self.gone = bytearray(b"\x01") * span
        self.loading = True

    def chunks_to_restore(self, size: int) -> Iterator[tuple[int, int]]:
        """The [lo, hi) seq ranges still to read back, at most `size` each; the next one
        is computed after the caller's `restore_chunk` of the last (one loop for the
        server's streaming restore and for a whole load at once)."""
        while self.loading and self.loaded_next < self.stored_next:
            lo = self.loaded_next
            yield lo, min(lo + size, self.stored_next)

    def restore_chunk(self, chunk: Restored, upto_seq: int) -> None:
        """Stored messages below upto_seq, as columns in seq order (seqs missing are gone).

        Whole columns go into the arrays at C speed; only rows with a key, a delay
        or a consumed tombstone are visited one by one.
        """
        seqs, n, ab = chunk.seqs, len(chunk.seqs), self.arr_base
        self.loaded_next = max(self.loaded_next, upto_seq)
        if n == 0:
            return
        first = seqs[0]
        if seqs[-1] - first + 1 == n:  # dense
            i = first - ab
            self.prio[i:i + n] = array("b", chunk.priorities)
            self.published[i:i + n] = array("q", chunk.published)
            self.gone[i:i + n] = bytes(n)
        else:
            prio, pub, gone = self.prio, self.published, self.gone
            for s, p, t in zip(seqs, chunk.priorities, chunk.published, strict=True):
                i = s - ab
                prio[i], pub[i], gone[i] = p, t, 0
        for s, key in chunk.keys:
            self.key_id[s - ab] = self.intern_key(key)
        consumed = set(chunk.consumed)
        for s in consumed:
            self.gone[s - ab] = 1
        priorities = set(chunk.priorities)
        if len(priorities) == 1 and not consumed:
            self.ready[priorities.pop()].extend(seqs)
        else:
            lists: list[list[int]] = [[] for _ in range(PRIORITIES)]
            for s, p in zip(seqs, chunk.priorities, strict=True):
                if s not in consumed:
                    lists[p].append(s)
            for p, lst in enumerate(lists):
                self.ready[p].extend(lst)
        for s, nb in chunk.delayed:
            if s not in consumed:
                self.not_before[s] = nb
        self.live += n - len(consumed)

    def finish_restore(self) -> None:
        self.loading = False
        self.loaded_next = self.next_seq
        for p in range(PRIORITIES):
            self.ready[p].extend(self.tail[p])
        self.tail = [array("q") for _ in range(PRIORITIES)]
        for g in self.groups.values():
            g.drop_gone()

    def restore_dedup(self, stored: DedupIndex) -> None:
        """Put the stored dedup ids (older) under those published since the start."""
        self.dedup.restore(stored)
        self.dedup_ready = True

    # --- lookups -------------------------------------------------------------

    def exists(self, seq: int) -> bool:
        return self.base <= seq < self.next_seq and not self.gone[seq - self.arr_base]

    def priority_of(self, seq: int) -> int:
        """The priority whose ready list holds seq (as published or as read back)."""
        return self.prio[seq - self.arr_base]

    def priority_now(self, seq: int) -> int:
        """The priority deliveries of seq use: a change overrides its ready list's."""
        moved = self.moved
        if moved and seq in moved:
            return moved[seq]
        return self.prio[seq - self.arr_base]

    def published_of(self, seq: int) -> int:
        return self.published[seq - self.arr_base]

    def key_of(self, seq: int) -> int:
        return self.key_id[seq - self.arr_base]

    def is_gone(self, seq: int) -> bool:
        return seq < self.base or bool(self.gone[seq - self.arr_base])

    def due(self, seq: int, now_ms: int) -> bool:
        nb = self.not_before.get(seq)
        return nb is None or nb <= now_ms

    def ready_index(self, priority: int, seq: int) -> int:
        """Absolute index of the first entry >= seq in the priority's ready list."""
        return self.ready_off[priority] + bisect_left(self.ready[priority], seq)

    # --- removal -------------------------------------------------------------

    def mark_gone(self, seq: int) -> bool:
        i = seq - self.arr_base
        if seq < self.base or self.gone[i]:
            return False
        self.gone[i] = 1
        self.live -= 1
        self.not_before.pop(seq, None)
        self.moved.pop(seq, None)
        return True

    def cancel(self, seq: int) -> bool:
        """seq is gone for every group at once (a cancel or purge), wherever cursors are."""
        if not self.mark_gone(seq):
            return False
        self.cancelled.add(seq)
        self.cancelled_total += 1
        return True

    def done_for_all(self, seq: int) -> bool:
        """Every group is finished with seq (a queue without groups keeps everything)."""
        if not self.groups:
            return False
        return all(g.done(seq) for g in self.groups.values())

    def advance_base(self) -> list[int]:
        """Move `base` past messages every group is done with; returns seqs newly gone."""
        freed: list[int] = []
        end = min(self.durable_next, self.loaded_next) if self.loading else self.durable_next
        seq, ab = self.base, self.arr_base
        gone = self.gone
        while seq < end and (gone[seq - ab] or self.done_for_all(seq)):
            if self.mark_gone(seq):
                freed.append(seq)
            seq += 1
        self._move_base(seq)
        self._trim()
        return freed

    def _move_base(self, base: int) -> None:
        """Every seq below `base` is gone now: no group keeps them settled ahead of its
        cursor either (figures would subtract them twice)."""
        old, self.base = self.base, base
        if self.cancelled:
            self.cancelled = {s for s in self.cancelled if s >= base}
        if base > old:
            for g in self.groups.values():
                g.settled_below(old, base)

    def expire_before(self, cutoff_ms: int) -> list[int]:
        """Retention: seqs published at or before cutoff become gone (for every group)."""
        ab = self.arr_base
        return self._release_prefix(lambda seq, _: self.published[seq - ab] <= cutoff_ms)

    def drop_oldest(self, n: int) -> list[int]:
        """Overflow drop_oldest: the n oldest stored seqs become gone (for every group)."""
        return self._release_prefix(lambda _, freed: freed < n)

    def _release_prefix(self, more: Callable[[int, int], bool]) -> list[int]:
        """From base on, while more(seq, freed so far): seqs become gone; base moves past."""
        freed: list[int] = []
        end = self.loaded_next if self.loading else self.next_seq
        seq = self.base
        while seq < end and more(seq, len(freed)):
            if self.mark_gone(seq):
                freed.append(seq)
            seq += 1
        if seq > self.base:
            self._move_base(seq)
            self.durable_next = max(self.durable_next, seq)
            self._trim()
        return freed

    def _trim(self) -> None:
        drop = self.base - self.arr_base
        if drop < _TRIM_CHUNK:
            return
        for arr in (self.prio, self.published, self.key_id):
            del arr[:drop]
        del self.gone[:drop]
        self.arr_base = self.base
        for p in range(PRIORITIES):
            k = bisect_left(self.ready[p], self.base)
            if k:
                del self.ready[p][:k]
                self.ready_off[p] += k
        for g in self.groups.values():
            g.trimmed(self.base)

    def expire_dedup(self, cutoff_ms: int) -> int:
        """Forget dedup ids published before cutoff.

        Returns the seq below which the store may purge consumed messages: below
        `base` and below every dedup id still indexed.
        """
        if not self.dedup_ready:
            return self.purged
        self.dedup.expire(cutoff_ms)
        oldest = self.dedup.oldest_seq()
        return self.base if oldest is None else min(oldest, self.base)
