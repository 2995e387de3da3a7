"""Dedup ids inside a queue's window: a compact hash index, no Python object per entry.

Entries live in generations of open-addressing tables (three int64 arrays
each, at most half full), newest last. A full generation is closed and a new
one begun, so inserting never rehashes; expiry drops whole generations once
their newest entry left the window, and a lookup ignores entries older than
the window.

A new id must be looked for in every generation, so their number is what a
publish pays for. Each new generation is therefore sized to half of what the
index already holds (a power of two, at least MIN_CAPACITY): a queue taking
40,000 ids/s with a 5-minute window settles at about 3 generations instead
of ~90 of a fixed size, for about 80-100 bytes per id held (a dict plus its
expiry log: ~120), and a quiet queue's index costs 1.5 MiB.
"""

from __future__ import annotations

from array import array

MIN_CAPACITY = 1 << 15  # ids in the smallest generation (twice as many slots)
GROWTH_SHARE = 2  # a new generation holds at least len(index) // GROWTH_SHARE ids


class _Generation:
    __slots__ = ("capacity", "count", "hashes", "mask", "min_seq", "newest", "seqs", "times")

    def __init__(self, capacity: int = MIN_CAPACITY) -> None:
        slots = 2 * capacity  # at most half used, so probes stay short
        zeros = bytes(8 * slots)
        self.hashes = array("q", zeros)  # 0 = empty slot
        self.seqs = array("q", zeros)
        self.times = array("q", zeros)
        self.capacity = capacity
        self.mask = slots - 1
        self.count = 0
        self.newest = 0
        self.min_seq = 0

    def find(self, h: int) -> int:
        hashes, mask = self.hashes, self.mask
        i = h & mask
        while True:
            k = hashes[i]
            if k == h or k == 0:
                return i
            i = (i + 1) & mask

    def put(self, h: int, seq: int, t: int) -> None:
        i = self.find(h)
        if self.hashes[i] == 0:
            self.count += 1
        self.hashes[i], self.seqs[i], self.times[i] = h, seq, t
        self.newest = max(self.newest, t)
        if self.count == 1 or seq < self.min_seq:
            self.min_seq = seq


class DedupIndex:
    def __init__(self) -> None:
        self.generations: list[_Generation] = []

    def __len__(self) -> int:
        return sum(g.count for g in self.generations)

    def _open(self) -> _Generation:
        """The generation new ids go into, begun afresh when the newest is full."""
        gens = self.generations
        if gens and gens[-1].count < gens[-1].capacity:
            return gens[-1]
        capacity, want = MIN_CAPACITY, len(self) // GROWTH_SHARE
        while capacity < want:
            capacity <<= 1
        gens.append(_Generation(capacity))
        return gens[-1]

    def get(self, h: int, cutoff: int) -> int | None:
        """The seq first published with hash h at or after cutoff."""
        h = h or 1
        for g in reversed(self.generations):
            i = g.find(h)
            if g.hashes[i] == h:
                return g.seqs[i] if g.times[i] >= cutoff else None
        return None

    def claim(self, h: int, seq: int, t: int, cutoff: int) -> int | None:
        """`get(h, cutoff)`, and when that finds nothing, `add(h, seq, t)`: with one probe
        of the newest generation instead of two (this runs once per published message)."""
        h = h or 1
        g = self._open()
        gens = self.generations
        hashes, mask = g.hashes, g.mask
        i = h & mask
        while (k := hashes[i]) != h and k != 0:
            i = (i + 1) & mask
        if k == h:
            if g.times[i] >= cutoff:
                return g.seqs[i]
        else:
            for older in reversed(gens[:-1]):
                j = older.find(h)
                if older.hashes[j] == h:
                    if older.times[j] >= cutoff:
                        return older.seqs[j]
                    break
            g.count += 1
        hashes[i], g.seqs[i], g.times[i] = h, seq, t
        if t > g.newest:
            g.newest = t
        if g.count == 1 or seq < g.min_seq:
            g.min_seq = seq
        return None

    def add(self, h: int, seq: int, t: int) -> None:
        self._open().put(h or 1, seq, t)

    def expire(self, cutoff: int) -> None:
        """Drop generations whose newest entry is older than cutoff."""
        gens = self.generations
        drop = 0
        while drop < len(gens) - 1 and gens[drop].newest < cutoff:
            drop += 1
        if drop:
            del gens[:drop]
        if len(gens) == 1 and gens[0].newest < cutoff:
            gens.clear()

    def oldest_seq(self) -> int | None:
        """A seq at or below every indexed one (the store keeps tombstones from here)."""
        return self.generations[0].min_seq if self.generations else None

    def restore(self, older: DedupIndex) -> None:
        """Put entries read back from the store (older than any added since) underneath."""
        self.generations[:0] = older.generations
