"""The four scenarios, written once against the driver interface.

Each returns a Result whose Counts say whether the system really delivered
(and still holds) what it should; the runner catches failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Iterator, Sequence

from bench.drivers.base import Connection, Driver, body_index, make_body
from bench.processes import wait_until
from bench.results import Counts, Result
from bench.settings import BenchConfig, Scenario

MIB = 1024 * 1024
SETTLE_S = 10.0  # how long fire-and-forget acks may take to be counted by the broker


def _chunks(count: int, size: int, batch: int) -> Iterator[list[bytes]]:
    for start in range(0, count, batch):
        yield [make_body(i, size) for i in range(start, min(start + batch, count))]


async def produce(conn: Connection | Sequence[Connection], count: int, size: int, batch: int,
                  window: int) -> None:
    """Producers (one per connection): batches of `batch`, at most `window` batches per
    producer awaiting confirmation; together they send each message once."""
    chunks = _chunks(count, size, batch)
    conns = [conn] if isinstance(conn, Connection) else list(conn)

    async def lane(c: Connection) -> None:
        for chunk in chunks:  # lanes share the iterator, so each batch is sent once
            await c.publish(chunk)

    await asyncio.gather(*(lane(c) for c in conns for _ in range(window)))


async def settled_unacked(conn: Connection, expected: int) -> int:
    """The broker's unacked count once it equals `expected`, or the last one after SETTLE_S."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        n = await conn.unacked()
        if n == expected or time.monotonic() > deadline:
            return n
        await asyncio.sleep(0.1)


def new_result(driver: Driver, scenario: Scenario, size: int, run: int, n: int) -> Result:
    return Result(system=driver.name, durability=driver.durability, scenario=scenario,
                  body_size=size, run=run, messages=n)


class CpuMeter:
    """CPU used by the broker and by this process between start() and stop(), per message."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.broker0 = self.client0 = 0.0

    def start(self) -> None:
        self.broker0, self.client0 = self.driver.cpu_seconds(), time.process_time()

    def record(self, res: Result, n: int) -> None:
        res.broker_cpu_us = (self.driver.cpu_seconds() - self.broker0) / n * 1e6
        res.client_cpu_us = (time.process_time() - self.client0) / n * 1e6


async def publish_only(driver: Driver, cfg: BenchConfig, size: int, run: int) -> Result:
    await driver.reset()
    n = cfg.messages
    conn = await driver.connect()
    cpu = CpuMeter(driver)
    res = new_result(driver, Scenario.PUBLISH, size, run, n)
    try:
        cpu.start()
        t0 = time.perf_counter()
        await produce(conn, n, size, cfg.batch, cfg.window)
        seconds = time.perf_counter() - t0
        cpu.record(res, n)
        held = await settled_unacked(conn, n)
    finally:
        await conn.close()
    res.seconds, res.msgs_per_s, res.mib_per_s = seconds, n / seconds, n * size / MIB / seconds
    res.counts = Counts(expected=n, delivered=n, unacked_after=held, expected_unacked_after=n)
    return res


class Tally:
    """Which message indexes consumers have acked; sets `done` when all of them are in."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.seen = bytearray(expected)
        self.delivered = 0
        self.duplicates = 0
        self.done = asyncio.Event()
        self.finished_at = 0.0

    def __call__(self, bodies: Sequence[bytes]) -> None:
        for body in bodies:
            i = body_index(body)
            if self.seen[i]:
                self.duplicates += 1
                continue
            self.seen[i] = 1
            self.delivered += 1
        if self.delivered == self.expected and not self.done.is_set():
            self.finished_at = time.perf_counter()
            self.done.set()


async def end_to_end(driver: Driver, cfg: BenchConfig, size: int, run: int) -> Result:
    await driver.reset()
    n = cfg.messages
    tally, stop = Tally(n), asyncio.Event()
    producer = await driver.connect()
    # More producers each get a connection of their own; the first one also reads stats.
    others = [await driver.connect() for _ in range(cfg.producers - 1)]
    consumers = [await driver.connect() for _ in range(cfg.consumers)]
    tasks = [
        asyncio.create_task(c.consume(f"c{i}", cfg.batch, tally, stop))
        for i, c in enumerate(consumers)
    ]
    cpu = CpuMeter(driver)
    res = new_result(driver, Scenario.E2E, size, run, n)
    try:
        cpu.start()
        t0 = time.perf_counter()
        await produce([producer, *others], n, size, cfg.batch, cfg.window)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.done.wait(), cfg.e2e_timeout_s)
        cpu.record(res, n)
        # A consumer that failed must fail the scenario, not leave it waiting.
        for t in tasks:
            if t.done() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        seconds = (tally.finished_at or time.perf_counter()) - t0
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in (*consumers, *others):
            await c.close()
    try:
        left = await settled_unacked(producer, 0)
    finally:
        await producer.close()
    res.seconds, res.msgs_per_s, res.mib_per_s = seconds, n / seconds, n * size / MIB / seconds
    res.counts = Counts(expected=n, delivered=tally.delivered, duplicates=tally.duplicates,
                        unacked_after=left)
    return res


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[max(0, min(len(sorted_values), rank) - 1)]


async def latency(driver: Driver, cfg: BenchConfig, run: int) -> Result:
    """Open loop: message i is due at t0 + i/rate whatever happened before, and its latency
    counts from that due time, so a stalled broker cannot hide behind a slowed producer."""
    await driver.reset()
    n, size = max(1, int(cfg.rate * cfg.latency_seconds)), cfg.latency_size
    warmup = n // 10
    lat = [0.0] * n
    conn = await driver.connect()

    async def one(i: int, due: float) -> None:
        await conn.publish([make_body(i, size)])
        lat[i] = time.perf_counter() - due

    # Only unfinished publishes are kept: holding all 20,000 finished tasks made each of the
    # harness's full GC passes take ~90 ms, a stall that showed up as every system's max.
    pending: set[asyncio.Task[None]] = set()
    failed: list[BaseException] = []

    def finished(task: asyncio.Task[None]) -> None:
        pending.discard(task)
        if not task.cancelled() and (e := task.exception()) is not None:
            failed.append(e)

    try:
        t0 = time.perf_counter() + 0.01
        for i in range(n):
            due = t0 + i / cfg.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(i, due))
            pending.add(task)
            task.add_done_callback(finished)
        sent = time.perf_counter() - t0
        await asyncio.gather(*pending)
        if failed:
            raise failed[0]
        held = await settled_unacked(conn, n)
    finally:
        await conn.close()
    measured = sorted(lat[warmup:])
    res = new_result(driver, Scenario.LATENCY, size, run, n)
    res.offered_rate, res.achieved_rate = float(cfg.rate), n / sent if sent > 0 else None
    res.p50_ms = percentile(measured, 50) * 1000
    res.p99_ms = percentile(measured, 99) * 1000
    res.max_ms = measured[-1] * 1000
    res.counts = Counts(expected=n, delivered=n, unacked_after=held, expected_unacked_after=n)
    return res


async def _serving(driver: Driver, limit_s: float) -> None:
    """Until the restarted broker hands out a message of the backlog."""
    async def serves() -> bool:
        conn = await driver.connect()
        try:
            return await conn.receive_one() is not None
        finally:
            await conn.close()

    await wait_until(serves, driver, limit_s, "serving a message of the backlog")


async def backlog(driver: Driver, cfg: BenchConfig, run: int) -> Result:
    """Load cfg.backlog messages, stop the broker gracefully, start it, time until it serves."""
    await driver.reset()
    n, size = cfg.backlog, cfg.backlog_size
    conn = await driver.connect()
    try:
        t0 = time.perf_counter()
        await produce(conn, n, size, cfg.backlog_batch, 4)
        load_s = time.perf_counter() - t0
        held_before = await settled_unacked(conn, n)
    finally:
        await conn.close()
    rss_loaded = driver.rss_bytes()
    await driver.stop()
    t1 = time.perf_counter()
    await driver.start()
    await _serving(driver, 600)
    serving_s = time.perf_counter() - t1
    rss_restarted = driver.rss_bytes()
    conn = await driver.connect()
    try:
        held_after = await settled_unacked(conn, n - 1)
    finally:
        await conn.close()
    res = new_result(driver, Scenario.BACKLOG, size, run, n)
    res.load_msgs_per_s = n / load_s
    res.rss_loaded_mb = rss_loaded / MIB
    res.restart_serving_s = serving_s
    res.rss_restarted_mb = rss_restarted / MIB
    # delivered: what the broker held before the restart; unacked_after: what it holds after
    # handing one out, so a restart that loses messages fails the counts.
    res.counts = Counts(expected=n, delivered=held_before, unacked_after=held_after,
                        expected_unacked_after=n - 1)
    return res
