"""What survives a crash (kill -9) and a graceful stop (SIGTERM) of a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import random

import aiohttp
import pytest
from broker_api import Api
from fixtures.broker_process import BrokerProcess
from fixtures.brokers import both_engines

pytestmark = [pytest.mark.functional, both_engines]


async def test_kill_9_loses_no_answered_publish_or_ack(broker: BrokerProcess) -> None:
    published: set[str] = set()  # every id whose publish got a 200
    acked: set[str] = set()  # every id whose ack answered "ok"
    ack_sent: set[str] = set()  # acks sent, answered or not (a crash may cut the answer off)
    async with Api.connect(broker.url) as api:
        await api.ok("PUT", "/v1/queues/jobs")
        await api.ok("PUT", "/v1/queues/jobs/groups/w", {"visibility_timeout_ms": 60_000})

        async def produce(worker: int) -> None:
            n = 0
            while True:
                batch = [{"body": {"w": worker, "n": n + i}} for i in range(random.randint(1, 20))]
                n += len(batch)
                published.update(await api.publish("jobs", *batch))

        async def consume(name: str) -> None:
            while True:
                got = await api.receive("jobs", "w", consumer=name, max=25, wait_ms=200)
                if not got:
                    continue
                ack_sent.update(m["id"] for m in got)
                statuses = await api.settle("ack", "jobs", "w", [m["receipt"] for m in got])
                acked.update(m["id"] for m, st in zip(got, statuses, strict=True) if st == "ok")

        tasks = [asyncio.create_task(produce(i)) for i in range(3)]
        tasks += [asyncio.create_task(consume(f"c{i}")) for i in range(2)]
        while len(published) < 1500 or len(acked) < 500:
            await asyncio.sleep(0.02)
            assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
        broker.kill()  # mid-flight: requests are being answered right now
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await t

    broker.restart()
    async with Api.connect(broker.url) as api:
        redelivered: set[str] = set()
        while got := await api.receive("jobs", "w", consumer="after", max=1000):
            redelivered.update(m["id"] for m in got)
            await api.settle("ack", "jobs", "w", [m["receipt"] for m in got])
        assert not redelivered & acked, "an acknowledged message came back after the crash"
        missing = published - ack_sent - redelivered
        assert not missing, f"{len(missing)} answered publishes were lost"
        stats = await api.ok("GET", "/v1/queues/jobs")
        assert stats["published_total"] >= len(published)


async def test_state_survives_a_restart(broker: BrokerProcess, api: Api) -> None:
    await api.ok("PUT", "/v1/queues/jobs", {"max_deliveries": 2, "fair": True})
    await api.ok("PUT", "/v1/queues/jobs/groups/a", {"nack_backoff": {"initial_ms": 0}})
    ids = await api.publish("jobs", *[{"body": i, "dedup_id": f"d{i}"} for i in range(5)])
    await api.ok("PUT", "/v1/queues/jobs/groups/b", {"start_at": "latest"})
    got = await api.receive("jobs", "a", max=5)
    await api.settle("ack", "jobs", "a", [got[0]["receipt"]])
    await api.settle("nack", "jobs", "a", [got[1]["receipt"]], delay_ms=0)
    (again,) = [m for m in await api.receive("jobs", "a", max=5) if m["id"] == got[1]["id"]]
    await api.settle("nack", "jobs", "a", [again["receipt"]])  # second delivery: dead
    await api.settle("nack", "jobs", "a", [got[2]["receipt"]], delay_ms=0)  # count 1
    before = await api.ok("GET", "/v1/queues/jobs")

    broker.restart()
    async with Api.connect(broker.url) as api:
        after = await api.ok("GET", "/v1/queues/jobs")
        assert after["settings"] == before["settings"]
        assert after["published_total"] == 5
        assert after["messages"] == 4  # the acked one is gone: b started after it
        a_before, a_after = before["groups"][0], after["groups"][0]
        assert (a_after["acked_total"], a_after["dead"]) == (1, 1)
        assert a_after["settings"] == a_before["settings"]
        assert after["groups"][1]["lag"] == 0  # b started at latest: nothing for it
        # Leases held before the restart are handed out again; counts carry over.
        got = {m["id"]: m for m in await api.receive("jobs", "a", max=10)}
        assert set(got) == {ids[2], ids[3], ids[4]}
        assert got[ids[2]]["delivery_count"] == 2
        dead = await api.ok("GET", "/v1/queues/jobs/groups/a/dead")
        assert [m["id"] for m in dead["messages"]] == [ids[1]]
        # The dedup window survives too.
        assert await api.publish("jobs", {"body": 0, "dedup_id": "d0"}) == [ids[0]]
        new = await api.publish("jobs", {"body": 9})
        assert new[0] not in ids


async def test_sigterm_drains_long_polls_and_exits_cleanly(broker: BrokerProcess, api: Api) -> None:
    await api.create("jobs", "w")
    (mid,) = await api.publish("jobs", {"body": "kept"})
    await api.receive("jobs", "w", consumer="x")  # leased; the lease is not durable
    polls = [asyncio.create_task(api.receive("jobs", "w", consumer=f"p{i}", wait_ms=60_000))
             for i in range(3)]
    await api.seen("jobs", "w", "p0", "p1", "p2")
    loop = asyncio.get_running_loop()
    code = await loop.run_in_executor(None, broker.stop)
    assert code == 0
    for p in polls:
        assert await p == []  # answered (empty), not cut off
    assert '"msg":"stopped"' in broker.logs()
    broker.start()
    async with Api.connect(broker.url) as api:
        assert [m["id"] for m in await api.receive("jobs", "w")] == [mid]

