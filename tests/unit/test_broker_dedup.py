"""The compact dedup index: lookups across generations, the window, expiry."""

from __future__ import annotations

import random

import pytest

from ferry.broker.core.dedup import MIN_CAPACITY, DedupIndex

pytestmark = pytest.mark.unit


def test_finds_every_id_across_generations_and_misses_others() -> None:
    rng = random.Random(7)
    index = DedupIndex()
    hashes = [rng.getrandbits(64) - 2**63 for _ in range(MIN_CAPACITY * 2 + 10)]
    for seq, h in enumerate(hashes, start=1):
        index.add(h, seq, 1000 + seq)
    assert len(index.generations) == 3 and len(index) == len(hashes)
    for seq, h in enumerate(hashes, start=1):
        assert index.get(h, 0) == seq
    assert all(index.get(rng.getrandbits(63), 0) is None for _ in range(1000))
    assert index.get(0, 0) is None
    index.add(0, 99, 5)  # hash 0 is the empty-slot marker: stored as 1
    assert index.get(0, 0) == 99


def test_window_hides_old_entries_and_expiry_drops_whole_generations() -> None:
    index = DedupIndex()
    for seq in range(1, MIN_CAPACITY + 2):  # one full generation (times 1..MIN_CAPACITY) + 1
        index.add(seq * 7919, seq, seq)
    assert index.get(7919, cutoff=1) == 1
    assert index.get(7919, cutoff=2) is None  # published before the window
    assert index.oldest_seq() == 1
    index.expire(MIN_CAPACITY)  # the first generation's newest entry is still inside
    assert len(index.generations) == 2
    index.expire(MIN_CAPACITY + 1)
    assert len(index.generations) == 1 and index.oldest_seq() == MIN_CAPACITY + 1
    index.expire(MIN_CAPACITY + 2)
    assert len(index) == 0 and index.oldest_seq() is None


def test_restored_entries_sit_under_newer_ones() -> None:
    older, newer = DedupIndex(), DedupIndex()
    older.add(42, 1, 10)
    older.add(43, 2, 10)
    newer.add(42, 5, 20)  # the same id published again after the restart's window check
    newer.restore(older)
    assert newer.get(42, 0) == 5 and newer.get(43, 0) == 2


def test_claim_agrees_with_get_then_add() -> None:
    """claim() is get() plus add() on a miss, in one probe: same answers, same index."""
    rng = random.Random(11)
    claimed, reference = DedupIndex(), DedupIndex()
    pool = [rng.getrandbits(64) - 2**63 for _ in range(2000)] + [0]
    for step in range(MIN_CAPACITY + 5000):  # spills into a second generation
        h = rng.choice(pool) if step % 3 == 0 else rng.getrandbits(64) - 2**63
        t, cutoff = step, step - 500  # entries older than 500 steps are outside the window
        expected = reference.get(h, cutoff)
        if expected is None:
            reference.add(h, step, t)
        assert claimed.claim(h, step, t, cutoff) == expected
    assert len(claimed) == len(reference)
    assert claimed.oldest_seq() == reference.oldest_seq()
    assert [g.newest for g in claimed.generations] == [g.newest for g in reference.generations]


def test_generations_stay_few_as_the_window_fills_and_slides() -> None:
    """A new id is looked for in every generation, so a busy queue must not pile them up."""
    index, window = DedupIndex(), 8 * MIN_CAPACITY
    end = 3 * window  # one id per tick: three windows' worth
    for t in range(1, end + 1):
        index.claim(t * 0x9E3779B97F4A7C15 & (2**63 - 1), t, t, t - window)
        if t % 4096 == 0:
            index.expire(t - window)
    # Generations of the smallest size would number 8 to 9 here; sized ones settle at ~3.
    assert len(index.generations) <= 4
    assert window <= len(index) <= 2 * window
    assert index.get(end * 0x9E3779B97F4A7C15 & (2**63 - 1), end - window) == end
