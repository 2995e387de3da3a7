"""Replicated queues on PostgreSQL: leader kill -9, fencing, database failover.

Brokers share one PostgreSQL queue set: one leads, the others stand by. Clients
reach them through one address that routes to the ready broker (testsupport/services.py,
what a Kubernetes Service does), and ride through every takeover with the real
Python client: publishes retried with their dedup ids, consumers reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from broker_api import Api
from fixtures.broker_process import BrokerProcess
from fixtures.postgres import Replicated, fresh_database, replicated
from testsupport.processes import Process
from testsupport.services import ReadyService
from testsupport.waiting import eventually_async

from ferry.broker.client import BrokerClient
from ferry.broker.core import Incoming
from ferry.broker.models import OutgoingMessage, QueueSettings, ReceiptStatus
from ferry.broker.store.postgres import FencedError, PgStore
from ferry.broker.store.writer import StoreError

pytestmark = pytest.mark.functional

KILLS = 10
RETRIES = 20  # generous: each takeover must finish while a call's retries last


class Brokers:
    """Brokers on one queue set; the first started leads."""

    def __init__(self, tmp_path: Path, dsn: str, n: int = 2) -> None:
        schema = "t_" + uuid.uuid4().hex[:12]
        self.all = [
            BrokerProcess(tmp_path / f"data{i}", tmp_path / f"broker{i}.log",
                          "--postgres", dsn, "--postgres-schema", schema)
            for i in range(n)
        ]

    def start(self) -> None:
        self.all[0].start()  # waits until it leads
        for b in self.all[1:]:
            b.wait_ready = False  # a standby: healthy, never ready while the leader lives
            b.start()

    def ports(self) -> list[int]:
        return [b.port for b in self.all if b.alive()]

    def stop(self) -> None:
        for b in self.all:
            with contextlib.suppress(Exception):
                b.stop(timeout=10)
            b.kill()
            # Captured: pytest shows it only when the test failed, to tell why.
            print(f"--- the last lines of {b.log}:\n{b.tail(60)}")


@pytest.fixture
def brokers(tmp_path: Path, postgres: str) -> Iterator[Brokers]:
    bs = Brokers(tmp_path, postgres)
    bs.start()
    try:
        yield bs
    finally:
        bs.stop()


@pytest.fixture
async def service(brokers: Brokers) -> AsyncIterator[ReadyService]:
    svc = await ReadyService(brokers.ports).start()
    try:
        yield svc
    finally:
        await svc.close()


class Load:
    """Publishers and consumers through the service, with what each was answered."""

    def __init__(self, url: str, queue: str = "jobs") -> None:
        self.url, self.queue = url, queue
        self.answered: dict[int, str] = {}  # message number -> id, for every answered publish
        self.acked: set[str] = set()  # ids whose ack was answered "ok"
        self.delivered: dict[str, int] = {}  # id -> message number
        self.acked_then_delivered: list[str] = []
        self._publishing = True
        self._consuming = True
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Load:
        async with BrokerClient(self.url, retries=RETRIES) as admin:
            await admin.put_queue(self.queue)
            await admin.put_group(self.queue, "w")
        self._tasks = [asyncio.create_task(self._produce(w)) for w in range(2)]
        self._tasks += [asyncio.create_task(self._consume(f"c{i}")) for i in range(2)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    def check(self) -> None:
        for t in self._tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                raise AssertionError(f"a client gave up: {t.exception()!r}")

    async def _produce(self, worker: int) -> None:
        async with BrokerClient(self.url, retries=RETRIES, timeout=10) as client:
            n = worker * 10_000_000
            while self._publishing:
                batch = [OutgoingMessage(body={"n": n + i}) for i in range(10)]
                ids = await client.publish(self.queue, batch)
                for i, mid in enumerate(ids):
                    self.answered[n + i] = mid
                n += len(batch)

    async def _consume(self, name: str) -> None:
        async with BrokerClient(self.url, retries=RETRIES, timeout=10) as client:
            while self._consuming:
                got = await client.receive(self.queue, "w", name, max=50, wait_ms=200)
                for d in got:
                    if d.id in self.acked:
                        self.acked_then_delivered.append(d.id)
                    self.delivered[d.id] = d.body["n"]
                if got:
                    results = await client.ack(self.queue, "w", [d.receipt for d in got])
                    self.acked.update(
                        d.id for d, r in zip(got, results, strict=True)
                        if r.status is ReceiptStatus.OK
                    )

    async def grow(self, publishes: int, acks: int) -> None:
        """Wait for this many more answered publishes and acks."""
        p, a = len(self.answered) + publishes, len(self.acked) + acks

        async def grown() -> bool:
            self.check()
            return len(self.answered) >= p and len(self.acked) >= a

        await eventually_async(grown, f"{publishes} more publishes and {acks} more acks")

    async def finish(self) -> None:
        """Stop publishing; consume until every answered publish was delivered."""
        self._publishing = False
        for t in self._tasks[:2]:
            with contextlib.suppress(asyncio.CancelledError):
                await t

        async def drained() -> bool:
            self.check()
            return set(self.answered.values()) <= set(self.delivered)

        await eventually_async(drained, "every answered publish delivered")
        self._consuming = False

    def verify(self) -> None:
        lost = set(self.answered.values()) - set(self.delivered)
        assert not lost, f"{len(lost)} answered publishes were lost"
        assert not self.acked_then_delivered, (
            f"{len(self.acked_then_delivered)} messages came back after their ack was answered"
        )
        by_number: dict[int, set[str]] = {}
        for mid, n in self.delivered.items():
            by_number.setdefault(n, set()).add(mid)
        twice = {n: ids for n, ids in by_number.items() if len(ids) > 1}
        assert not twice, f"{len(twice)} publishes were stored twice (dedup ids not kept)"


async def leader_of(brokers: Brokers, service: ReadyService) -> BrokerProcess:
    port = await service.ready_port()
    return next(b for b in brokers.all if b.port == port)


async def test_standby_answers_health_only_names_the_leader_and_takes_over_on_sigterm(
    brokers: Brokers,
) -> None:
    leader, standby = brokers.all
    async with aiohttp.ClientSession() as s:
        status, doc = await Api(s, leader.url).call("GET", "/readyz")
        assert (status, doc["role"], doc["engine"]) == (200, "leader", "postgres")
        assert doc["leader"]["holder"].endswith(f":{leader.port}")
        epoch = doc["leader"]["epoch"]
        sapi = Api(s, standby.url)
        assert (await sapi.call("GET", "/healthz"))[0] == 200
        status, doc = await sapi.call("GET", "/readyz")
        assert (status, doc["role"]) == (503, "standby")
        assert doc["leader"]["holder"].endswith(f":{leader.port}")
        status, doc = await sapi.call("PUT", "/v1/queues/jobs")
        assert (status, doc["error"]["code"]) == (503, "unavailable")

        assert leader.stop() == 0  # a graceful stop hands the lock over at once
        await sapi.restored()
        status, doc = await sapi.call("GET", "/readyz")
        assert doc["role"] == "leader" and doc["leader"]["epoch"] == epoch + 1


async def test_leader_kill_9_under_load_again_and_again(
    brokers: Brokers, service: ReadyService
) -> None:
    takeovers: list[float] = []
    async with Load(service.url) as load:
        for _ in range(KILLS):
            await load.grow(publishes=100, acks=30)
            leader = await leader_of(brokers, service)
            t0 = time.monotonic()
            leader.kill()
            successor = await leader_of(brokers, service)
            takeovers.append(time.monotonic() - t0)
            assert successor is not leader
            leader.wait_ready = False
            await asyncio.to_thread(leader.start)  # back as a standby
        await load.grow(publishes=100, acks=30)
        await load.finish()
    load.verify()
    print(f"\n{KILLS} takeovers after kill -9: median {statistics.median(takeovers):.2f} s, "
          f"max {max(takeovers):.2f} s; {len(load.answered)} publishes, {len(load.acked)} acks")


async def test_a_deposed_leader_cannot_write(postgres: str) -> None:
    """The epoch fence, on its own: a leader whose lock was lost and taken over by another
    broker sends one more commit; PostgreSQL refuses it and the broker fail-stops."""
    schema = "t_" + uuid.uuid4().hex[:12]
    old, new = PgStore(postgres, schema, "old"), PgStore(postgres, schema, "new")
    try:
        await old.elect()
        core = await old.restore(0)
        core.put_queue("jobs", QueueSettings(), 0)
        fut = old.writer.submit(core.take_writes())
        assert fut is not None
        await fut
        # The old leader stalls; the server ends its lock session (idle_session_timeout).
        conn = await asyncpg.connect(postgres)
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                " AND granted AND database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())"
            )
            await new.elect()  # the lock is free: the new leader raises the epoch
            # The old leader wakes up and commits a publish it was holding.
            core.publish("jobs", [Incoming(0, 0, None, None, b'{"body":1}')], 1)
            late = old.writer.submit(core.take_writes())
            async def failed() -> bool:
                return old.writer.failed

            await eventually_async(failed, "the late commit fails")
            assert old.writer.failure is not None and "fenced" in old.writer.failure
            # Refused, so rolled back: its request is told nothing happened (503).
            assert late is not None and isinstance(late.exception(), FencedError), late
            stored = await conn.fetchval(f'SELECT count(*) FROM "{schema}".messages')
            assert stored == 0, "the deposed leader's write reached the database"
            # The engine reports itself lost (its lock session's end or the fence, whichever
            # came first), so the broker fail-stops.
            reasons: list[str] = []
            old.on_lost(reasons.append)  # a listener is told at once when lost already
            assert reasons and reasons[0]
        finally:
            await conn.close()
    finally:
        await old.aclose()
        await new.aclose()


async def test_postgres_out_of_reach_while_a_new_leader_reads_back_is_a_loss(
    postgres: str,
) -> None:
    """Elected, then PostgreSQL takes no new connection (as mid-failover): reading the
    queue set back fails as a loss, so the broker starts over as a standby, instead of
    a failure that exits 1 and waits out its supervisor's backoff."""
    dsn = await fresh_database(postgres)
    database = dsn.rsplit("/", 1)[1]
    store = PgStore(dsn, "ferry", "me")
    admin = await asyncpg.connect(postgres)
    try:
        await store.elect()  # its lock and writer sessions stay; the reading pool is new
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        reasons: list[str] = []
        store.on_lost(reasons.append)
        with pytest.raises(StoreError):
            await store.restore(0)
        assert reasons and "unreachable while reading the queue set back" in reasons[0], reasons
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()
        await store.aclose()


async def test_a_frozen_leader_is_deposed_and_cannot_write_when_it_wakes(
    brokers: Brokers,
) -> None:
    """SIGSTOP: the leader's socket stays open, so only the lease (its lock session's
    idle_session_timeout) frees the lock; woken, its writes are fenced and unanswered."""
    old, new = brokers.all
    async with aiohttp.ClientSession() as s:
        await Api(s, old.url).ok("PUT", "/v1/queues/jobs")
        assert old.proc is not None
        old.proc.send_signal(signal.SIGSTOP)
        try:
            await Api(s, new.url).restored()
            await Api(s, new.url).publish("jobs", {"body": "from the new leader"})
        finally:
            old.proc.send_signal(signal.SIGCONT)
        with contextlib.suppress(aiohttp.ClientError):
            status, _ = await Api(s, old.url).call(
                "POST", "/v1/queues/jobs/messages", {"messages": [{"body": "stale"}]})
            assert status != 200, "a deposed leader answered a publish"

        async def standby() -> bool:
            with contextlib.suppress(aiohttp.ClientError):
                status, doc = await Api(s, old.url).call("GET", "/readyz")
                return status == 503 and doc["role"] == "standby"
            return False

        await eventually_async(standby, "the woken leader back as a standby")
        stats = await Api(s, new.url).ok("GET", "/v1/queues/jobs")
        assert stats["messages"] == 1, "the deposed leader's write was stored"


@pytest.fixture
def replicated_pg() -> Iterator[Replicated]:
    with replicated() as rep:
        yield rep


async def test_postgres_primary_killed_and_standby_promoted_under_load(
    tmp_path: Path, replicated_pg: Replicated
) -> None:
    bs = Brokers(tmp_path, replicated_pg.dsn())
    bs.start()
    try:
        svc = await ReadyService(bs.ports).start()
        try:
            async with Load(svc.url) as load:
                await load.grow(publishes=300, acks=100)
                replicated_pg.primary.kill()
                await asyncio.to_thread(replicated_pg.standby.promote)
                await load.grow(publishes=300, acks=100)
                await load.finish()
            load.verify()
        finally:
            await svc.close()
    finally:
        bs.stop()


async def test_the_cli_rides_through_a_takeover(
    tmp_path: Path, brokers: Brokers, service: ReadyService
) -> None:
    """`ferry publish` keeps going across a leader kill -9: every line stored, once."""
    lines = 20_000
    source = tmp_path / "lines.txt"
    source.write_text("".join(f'{{"n": {n}}}\n' for n in range(lines)))
    async with BrokerClient(service.url, retries=RETRIES) as admin:
        await admin.put_queue("cli")
        cli = Process(["ferry", "--url", service.url, "--retries", str(RETRIES), "publish", "cli",
                       "--file", str(source), "--batch-size", "100"], tmp_path / "cli.log")
        cli.start()
        try:
            async def started() -> bool:  # kill once the first batches are stored
                return not cli.alive() or (await admin.queue_stats("cli")).messages > 0

            await eventually_async(started, "the first batches stored")
            leader = await leader_of(brokers, service)
            leader.kill()
            assert cli.alive(), "the CLI finished before the kill: raise `lines`"
            async def finished() -> bool:
                return not cli.alive()

            await eventually_async(finished, "the CLI finishes")
        finally:
            cli.stop()
        assert cli.proc is not None and cli.proc.returncode == 0, cli.tail()
        assert (await admin.queue_stats("cli")).messages == lines


async def test_a_group_filter_and_what_it_skipped_survive_a_takeover(brokers: Brokers) -> None:
    leader, standby = brokers.all
    async with Api.connect(leader.url) as api:
        await api.create("jobs")
        await api.ok("PUT", "/v1/queues/jobs/groups/eu", {"filter": {"match": {"type": "order"}}})
        ids = await api.publish("jobs", {"body": 0, "headers": {"type": "order"}},
                                {"body": 1, "headers": {"type": "refund"}}, {"body": 2})
        leader.kill()
        sapi = Api(api.session, standby.url)
        await sapi.restored()
        group = await sapi.ok("GET", "/v1/queues/jobs/groups/eu")
        assert group["settings"]["filter"] == {"match": {"type": "order"}, "prefix": {}}
        assert group["lag"] == 1  # the skipped two stay settled for the group
        assert [m["id"] for m in await sapi.receive("jobs", "eu", max=10)] == [ids[0]]
        more = await sapi.publish("jobs", {"body": 3, "headers": {"type": "order"}},
                                  {"body": 4, "headers": {"type": "refund"}})
        assert [m["id"] for m in await sapi.receive("jobs", "eu", max=10)] == [more[0]]
