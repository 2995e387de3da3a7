"""Scenario (6) `idle`: what idle subscribed consumers cost Ferry's broker.

Lag autoscaling leaves many consumers subscribed with nothing to do. Here N of them
(`--idle-consumers`, each its own client and connection, streaming from a queue of their
own that gets no message) subscribe to the broker; the figures are the broker's RSS
before and with them, and the latency scenario's publish p99 (on the benchmark queue)
run with them subscribed, against the same scenario without them in the same run.
The idle consumers live in a process of their own (`python -m bench.idle URL N`), so
their clients' timers do not share the event loop that times the publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from bench import scenarios
from bench.drivers.base import Driver
from bench.drivers.ferry import FerryDriver
from bench.processes import ServerProcess
from bench.results import Counts, Result
from bench.settings import BenchConfig, Scenario
from ferry.broker.client import BrokerClient, Consumer

IDLE_QUEUE, IDLE_GROUP = "idle", "idlers"
ROOT = Path(__file__).resolve().parents[1]  # where `python -m bench.idle` resolves


async def _subscribed(url: str, n: int, limit_s: float) -> int:
    """The idle group's consumer count once it is n, or the last one after limit_s."""
    deadline = asyncio.get_running_loop().time() + limit_s
    async with BrokerClient(url) as client:
        while True:
            got = len((await client.group_stats(IDLE_QUEUE, IDLE_GROUP)).consumers)
            if got >= n or asyncio.get_running_loop().time() > deadline:
                return got
            await asyncio.sleep(0.2)


async def _hold(consumer: Consumer, stop: asyncio.Event) -> None:
    async with consumer:
        receiving = asyncio.ensure_future(anext(consumer))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for t in (receiving, stopping):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await t


async def hold(url: str, n: int) -> None:
    """N idle consumers, each its own client, until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    clients = [BrokerClient(url) for _ in range(n)]
    holders = [asyncio.create_task(_hold(c.consumer(IDLE_QUEUE, IDLE_GROUP, f"idle-{i}"), stop))
               for i, c in enumerate(clients)]
    await stop.wait()
    await asyncio.gather(*holders, return_exceptions=True)
    for c in clients:
        await c.close()


async def idle(driver: Driver, cfg: BenchConfig, run: int) -> Result:
    """Latency alone, then N idle consumers subscribed, RSS, latency again.

    A first latency pass is thrown away: on a new broker it pays for the store's first
    writes (files growing, the first checkpoint), which made "alone" the slower side in
    3 runs of 4 (bench/README.md)."""
    assert isinstance(driver, FerryDriver)
    n = cfg.idle_consumers
    await scenarios.latency(driver, cfg, run)  # warm-up
    quiet = await scenarios.latency(driver, cfg, run)
    rss0 = driver.rss_bytes()
    async with BrokerClient(driver.url) as admin:
        await admin.put_queue(IDLE_QUEUE)
        await admin.put_group(IDLE_QUEUE, IDLE_GROUP)
    holders = ServerProcess("idle-consumers", [sys.executable, "-m", "bench.idle", driver.url,
                                               str(n)], driver.workdir / "idle-consumers.log",
                            cwd=ROOT)
    holders.start()
    try:
        subscribed = await _subscribed(driver.url, n, 300)
        holders.check_alive()
        rss1 = driver.rss_bytes()
        busy = await scenarios.latency(driver, cfg, run)
        still = await _subscribed(driver.url, n, 0)
    finally:
        await holders.stop()
    res = scenarios.new_result(driver, Scenario.IDLE, cfg.latency_size, run, n)
    res.idle_rss_mb = (rss1 - rss0) / scenarios.MIB
    res.p99_ms, res.quiet_p99_ms = busy.p99_ms, quiet.p99_ms
    if busy.p99_ms and quiet.p99_ms:
        res.idle_p99_ratio = busy.p99_ms / quiet.p99_ms
    # delivered: consumers subscribed through the second latency run
    res.counts = Counts(expected=n, delivered=min(subscribed, still))
    if not (quiet.ok and busy.ok):
        res.error = f"a latency run counted wrong: {quiet.counts} / {busy.counts}"
    return res


if __name__ == "__main__":
    asyncio.run(hold(sys.argv[1], int(sys.argv[2])))
