"""The SQLite store: what the core hands it comes back identical after a reopen."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from testsupport.waiting import eventually_async

import ferry.broker.store
from ferry.broker.core import Broker, Incoming, Queue, rowid
from ferry.broker.models import GroupSettings, QueueSettings, StartAt
from ferry.broker.store import Store, StoreError, loading
from ferry.broker.store.checkpoints import CHECKPOINT_S
from ferry.broker.store.schema import DDL, PAGE_SIZE

pytestmark = pytest.mark.functional

T0 = 1_700_000_000_000


async def flush(core: Broker, store: Store) -> None:
    fut = store.writer.submit(core.take_writes())
    assert fut is not None
    await fut


def started(
    path: Path, queue: str, group: str, checkpoint_s: float = CHECKPOINT_S
) -> tuple[Store, Broker]:
    """A store with its committer running, and a core holding one queue and one group."""
    store = Store(path, asyncio.get_running_loop(), checkpoint_s=checkpoint_s)
    core = store.load(T0)
    store.start()
    core.put_queue(queue, QueueSettings(), T0)
    core.put_group(queue, group, GroupSettings(), T0)
    return store, core


def reopened(path: Path, queue: str) -> tuple[Store, Broker, Queue]:
    """The store loaded again (not started), with the queue's stored dedup ids indexed."""
    store = Store(path, asyncio.get_running_loop())
    core = store.load(T0)
    q = core.queue(queue)
    q.restore_dedup(store.read_dedup({q.qid: q.settings.dedup_window_ms}, T0)[q.qid])
    return store, core, q


def snapshot(core: Broker, now: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, q in core.queues.items():
        out[name] = (q.qid, q.settings, q.published_total, q.live, q.next_seq)
        for gname, g in q.groups.items():
            f = g.figures(now)
            out[f"{name}/{gname}"] = (
                g.gid, g.settings, g.start_seq, g.acked_total, f.depth + f.in_flight, f.delayed,
                f.dead, sorted(g.dead.letters.items()),
            )
    return out


async def test_reopen_rebuilds_the_same_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    store = Store(tmp_path, loop)
    core = store.load(T0)
    store.start()
    core.put_queue("jobs", QueueSettings(max_deliveries=2), T0)
    core.put_queue("other", QueueSettings(fair=True), T0)
    core.put_group("jobs", "a", GroupSettings(), T0)
    core.put_group("jobs", "b", GroupSettings(), T0)
    items = [Incoming(i % 3, 60_000 if i == 7 else 0, f"k{i % 2}", f"d{i}", b'{"body":1}')
             for i in range(20)]
    core.publish("jobs", items, T0)
    core.publish("other", items[:3], T0)
    await flush(core, store)
    for q in core.queues.values():
        core.mark_durable(q.qid, q.next_seq)
    got = core.receive("jobs", "a", "c", 10, None, T0)
    core.ack("jobs", "a", [m.receipt for m in got[:5]], T0)
    core.nack("jobs", "a", [got[5].receipt], 0, T0)
    core.nack("jobs", "a", [got[6].receipt], 10_000, T0)
    again = [m for m in core.receive("jobs", "a", "c", 10, None, T0) if m.seq == got[5].seq]
    core.nack("jobs", "a", [again[0].receipt], 0, T0)  # second delivery: dead
    for m in core.receive("jobs", "b", "c", 20, None, T0)[:3]:
        core.ack("jobs", "b", [m.receipt], T0)
    core.put_group("jobs", "late", GroupSettings(start_at=StartAt.LATEST), T0)
    core.delete_queue("other")
    core.compact(T0)
    await flush(core, store)
    # Leases are not durable: the reopened broker hands those messages out again.
    for g in core.queue("jobs").groups.values():
        for s in list(g.leases.inflight):
            core.nack("jobs", g.name, [f"{g.gid}.{s}.{g.leases.inflight[s].token}"], 0, T0)
    expected = snapshot(core, T0)
    await flush(core, store)
    store.close()

    store2 = Store(tmp_path, loop)
    core2 = store2.load(T0)
    assert snapshot(core2, T0) == expected
    # Read back in chunks of 3 seqs (holes, priorities, keys, tombstones across chunks).
    monkeypatch.setattr(loading, "CHUNK", 3)
    assert snapshot(store2.load(T0), T0) == expected
    assert "other" not in core2.queues
    # Ids keep increasing across restarts and deleted queue ids are not reused.
    q = core2.put_queue("third", QueueSettings(), T0)[0]
    assert q.qid == 3
    store2.close()


async def test_large_commits_of_every_size_come_back(tmp_path: Path) -> None:
    """Rows go in as multi-row statements cut in chunks: odd, large counts lose nothing."""
    loop = asyncio.get_running_loop()
    store, core = started(tmp_path, "big", "g")
    published = 0
    for n in (1, 2, 3, 255, 256, 257, 1003):
        core.publish("big", [Incoming(0, 0, None, f"d{published + i}", b'{"body":1}')
                             for i in range(n)], T0)
        published += n
        await flush(core, store)  # one commit per size: each is cut into its own chunks
    q = core.queue("big")
    core.mark_durable(q.qid, q.next_seq)
    got = core.receive("big", "g", "c", 1000, None, T0)
    core.ack("big", "g", [m.receipt for m in got[::2]], T0)  # 500 consumed, every other one
    core.nack("big", "g", [m.receipt for m in got[1::2]], 60_000, T0)  # 500 count rows
    await flush(core, store)
    expected = snapshot(core, T0)
    store.close()

    store2 = Store(tmp_path, loop)
    core2 = store2.load(T0)
    assert snapshot(core2, T0) == expected
    assert core2.queue("big").live == published - 500
    store2.close()


async def test_documents_come_from_the_cache_or_the_database(tmp_path: Path) -> None:
    store, core = started(tmp_path, "jobs", "g")
    ids = core.publish("jobs", [Incoming(0, 0, None, None, b'{"n":%d}' % i) for i in range(3)], T0)
    await flush(core, store)
    assert await store.bodies.get(ids) == {ids[i]: b'{"n":%d}' % i for i in range(3)}
    assert store.bodies.misses == 3
    store.bodies.put(ids[0], b'{"n":0}')  # the transport caches what it publishes
    assert (await store.bodies.get(ids[:1]), store.bodies.hits) == ({ids[0]: b'{"n":0}'}, 1)
    core.delete_queue("jobs")
    await flush(core, store)
    assert await store.bodies.get(ids[1:]) == {}
    store.close()


async def test_a_data_dir_serves_one_broker_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    store = Store(tmp_path, loop)
    store.start()
    monkeypatch.setattr(ferry.broker.store, "LOCK_WAIT_S", 0.3)
    with pytest.raises(StoreError, match="in use by another ferry-broker"):
        Store(tmp_path, loop)
    store.close()
    Store(tmp_path, loop).close()  # free again once the first one (and its committer) ended


@pytest.mark.parametrize("noticed", ["on_write", "on_read"])
async def test_a_dead_committer_fails_writes_instead_of_losing_them(
    tmp_path: Path, noticed: str
) -> None:
    """Whichever end of the pipe tells first (a write's EPIPE or the answers' EOF: under
    load either can), the write fails naming the committer, and so does every later one."""
    store, core = started(tmp_path, "jobs", "g")
    try:
        await flush(core, store)
        pid = store.writer.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        # Gone, its ends of the pipes closed; waited for without letting the loop read the
        # answers' EOF, so that the next write meets EPIPE first.
        os.waitpid(pid, 0)  # noqa: ASYNC222 (blocking on purpose, see above)
        if noticed == "on_read":
            async def failed() -> bool:
                return store.writer.failed

            await eventually_async(failed, "the committer's end of the answers to be read")
        core.publish("jobs", [Incoming(0, 0, None, None, b"{}")], T0)
        with pytest.raises(StoreError, match="committer"):
            await flush(core, store)
        assert store.writer.failed
        core.publish("jobs", [Incoming(0, 0, None, None, b"{}")], T0)
        with pytest.raises(StoreError, match="committer"):  # and every later write too
            await flush(core, store)
    finally:
        store.close()


_DIES_AFTER_SENDING = """
import asyncio, os, sys
from ferry.broker.core import Incoming
from ferry.broker.models import QueueSettings
from ferry.broker.store import Store

async def main():
    store = Store(sys.argv[1], asyncio.get_running_loop())
    core = store.load(0)
    store.start()
    core.put_queue("jobs", QueueSettings(), 0)
    core.publish("jobs", [Incoming(0, 0, None, None, b"{}") for _ in range(500)], 0)
    store.writer.submit(core.take_writes(), wait=False)
    await asyncio.sleep(0)  # the frame goes out at the end of this turn of the loop
    os._exit(9)  # dies without waiting for the answer or stopping the committer

asyncio.run(main())
"""


async def test_writes_sent_before_the_broker_dies_still_land(tmp_path: Path) -> None:
    """The committer commits what it has read when its input ends; the lock waits for it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _DIES_AFTER_SENDING, str(tmp_path)
    )
    assert await proc.wait() == 9
    store = Store(tmp_path, asyncio.get_running_loop())  # waits while the committer finishes
    assert store.load(T0).queue("jobs").live == 500
    store.close()


def _wal_restarts(wal: Path) -> int:
    """The WAL header's checkpoint sequence: SQLite bumps it each time the WAL starts over."""
    try:
        with wal.open("rb") as f:
            header = f.read(16)
    except FileNotFoundError:
        return 0
    return int.from_bytes(header[12:16], "big") if len(header) == 16 else 0


async def test_the_wal_starts_over_under_steady_writes(tmp_path: Path) -> None:
    """A writer that never pauses must not let the WAL grow without end (disk, recovery)."""
    loop = asyncio.get_running_loop()
    # Checkpointer passes as often as this test writes fast.
    store, core = started(tmp_path, "steady", "g", checkpoint_s=0.05)
    doc = b'{"body":"' + b"x" * 4000 + b'"}'
    wal = tmp_path / "ferry.db-wal"
    written, biggest, in_flight = 0, 0, []
    first = _wal_restarts(wal)
    while written < 256 * 1024 * 1024:
        core.publish("steady", [Incoming(0, 0, None, None, doc) for _ in range(100)], T0)
        fut = store.writer.submit(core.take_writes())
        assert fut is not None
        in_flight.append(fut)
        written += 100 * len(doc)
        if len(in_flight) >= 8:  # keep the committer busy: it never waits for work
            await in_flight.pop(0)
            biggest = max(biggest, wal.stat().st_size)
    await asyncio.gather(*in_flight)
    restarts = _wal_restarts(wal) - first
    store.close()
    assert restarts >= 2, "the WAL never started over while writes kept coming"
    assert biggest < written // 2, f"WAL grew to {biggest} bytes for {written} written"

    store2 = Store(tmp_path, loop)
    assert store2.load(T0).queue("steady").live == written // len(doc)
    store2.close()


async def test_consumed_messages_free_their_space_and_keep_their_dedup_ids(
    tmp_path: Path,
) -> None:
    """A consumed body leaves the disk at once; its dedup id answers until the window ends."""
    store, core = started(tmp_path, "q", "g")
    body = b'{"body":"' + b"x" * 1000 + b'"}'  # rows that fit in a page: no overflow pages
    n = 4000
    ids = core.publish("q", [Incoming(0, 0, None, f"d{i}", body) for i in range(n)], T0)
    await flush(core, store)
    q = core.queue("q")
    core.mark_durable(q.qid, q.next_seq)
    got = core.receive("q", "g", "c", n, None, T0)
    core.ack("q", "g", [m.receipt for m in got[: n - 10]], T0)  # all but 10 consumed
    core.compact(T0)
    await flush(core, store)
    store.close()

    conn = sqlite3.connect(tmp_path / "ferry.db")
    pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                         for p in ("page_count", "freelist_count", "page_size"))
    conn.close()
    assert (pages - free) * size < n * len(body) // 10  # 10 bodies left, not 4,000

    store2, core2, q2 = reopened(tmp_path, "q")
    assert q2.live == 10
    again = core2.publish("q", [Incoming(0, 0, None, f"d{i}", body) for i in (0, n - 1)], T0 + 1)
    assert again == [ids[0], ids[n - 1]]  # a consumed one and a stored one: both known
    assert q2.live == 10
    store2.close()


async def test_consuming_big_messages_does_not_write_their_bodies_again(tmp_path: Path) -> None:
    """Deleting consumed 4 KiB messages writes a few pages, not each freed overflow page
    zeroed (SQLite's SECURE_DELETE, on in Debian's build, wrote every body twice)."""
    store, core = started(tmp_path, "q", "g", checkpoint_s=3600)  # the WAL only grows
    wal = tmp_path / "ferry.db-wal"
    n, body = 100, b'{"body":"' + b"x" * 4096 + b'"}'
    core.publish("q", [Incoming(0, 0, None, None, body) for _ in range(n)], T0)
    await flush(core, store)
    published = wal.stat().st_size
    q = core.queue("q")
    core.mark_durable(q.qid, q.next_seq)
    got = core.receive("q", "g", "c", n, None, T0)
    core.ack("q", "g", [m.receipt for m in got], T0)
    core.compact(T0)
    await flush(core, store)
    consumed = wal.stat().st_size - published
    store.close()
    assert consumed > 0, "the WAL started over between the two readings: nothing measured"
    assert consumed < n * len(body) // 4, f"consuming {n} messages wrote {consumed} WAL bytes"


async def test_a_store_from_before_tombstones_still_loads(tmp_path: Path) -> None:
    """Earlier versions kept consumed rows with doc NULL: they load as consumed, dedup ids kept."""
    store, core = started(tmp_path, "q", "g")
    ids = core.publish("q", [Incoming(0, 0, None, f"d{i}", b'{"body":1}') for i in range(5)], T0)
    await flush(core, store)
    store.close()
    conn = sqlite3.connect(tmp_path / "ferry.db")
    with conn:  # what the earlier store wrote when messages 1 and 2 were consumed
        conn.execute("UPDATE messages SET doc=NULL WHERE id IN (?, ?)", (ids[0], ids[1]))
        conn.execute("UPDATE groups SET acked_total=2")
    conn.close()

    store2, core2, q = reopened(tmp_path, "q")
    assert q.live == 3
    got = core2.receive("q", "g", "c", 10, None, T0)
    assert [rowid(q.qid, m.seq) for m in got] == ids[2:]  # the consumed two stay gone
    again = core2.publish("q", [Incoming(0, 0, None, "d0", b'{"body":1}')], T0 + 1)
    assert again == [ids[0]] and q.live == 3  # the consumed message's dedup id still answers
    store2.close()


async def test_a_store_made_with_another_page_size_keeps_it_and_works(tmp_path: Path) -> None:
    """connect() states the page size for new files only: a data dir whose file was made
    with other pages (another build, another release) opens, takes 4 KiB bodies, and
    gives them back after a reopen, its page size unchanged."""
    other = PAGE_SIZE * 4
    conn = sqlite3.connect(tmp_path / "ferry.db")
    conn.execute(f"PRAGMA page_size={other}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(DDL)
    conn.close()

    store, core = started(tmp_path, "q", "g")
    docs = [b'{"body":"%s"}' % (b"%d" % i * 4096)[:4096] for i in range(300)]
    ids = core.publish("q", [Incoming(0, 0, None, None, d) for d in docs], T0)
    await flush(core, store)
    store.close()

    store2, _, q = reopened(tmp_path, "q")
    assert q.live == 300
    assert await store2.bodies.get(ids) == dict(zip(ids, docs, strict=True))  # from the file
    store2.close()
    check = sqlite3.connect(tmp_path / "ferry.db")
    assert check.execute("PRAGMA page_size").fetchone() == (other,)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()


async def test_a_new_store_gets_the_stated_page_size(tmp_path: Path) -> None:
    store, _ = started(tmp_path, "q", "g")
    store.close()
    check = sqlite3.connect(tmp_path / "ferry.db")
    assert check.execute("PRAGMA page_size").fetchone() == (PAGE_SIZE,)
    check.close()
