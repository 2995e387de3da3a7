"""The whole pipeline with real processes: a ferry-broker, ferry-streamer and ferry-collector
subprocesses, a real PostgreSQL (SQLite where the engine does not matter)."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from testsupport.ports import lasting_port
from testsupport.waiting import answers, eventually_async

from ferry.broker.client import BrokerClient
from ferry.broker.models import Backoff, GroupSettings, OutgoingMessage
from ferry.telemetry.parsing.messages import (
    ROWS_V1,
    ROWS_VERSION,
    SCHEMA_HEADER,
    body_of,
    part_id,
)
from ferry.telemetry.parsing.rows import TelemetryRow, row_content, row_id
from ferry.telemetry.storage.opening import store_for
from ferry.telemetry.storage.records import NewSample
from ferry.telemetry.streamer.streaming import messages_of

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "examples" / "data" / "dcgm_sample.csv"
BAD_SAMPLE = ROOT / "examples" / "data" / "dcgm_bad_rows.csv"
BIN = Path(sys.executable).parent
QUEUE, GROUP = "telemetry", "collectors"
PATIENCE = 180.0  # a safety net against hangs, not a performance expectation


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    http_port: int | None = None

    def summary(self) -> dict[str, Any]:
        return dict(json.loads(self.out.read_text().strip().splitlines()[-1]))

    def logs(self, msg: str) -> list[dict[str, Any]]:
        lines = [json.loads(x) for x in self.err.read_text().splitlines() if x.startswith("{")]
        return [x for x in lines if x.get("msg") == msg]

    async def exit_code(self) -> int:
        return await asyncio.wait_for(asyncio.to_thread(self.popen.wait), PATIENCE)

    async def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return await r.text()


class Procs:
    """Starts the console scripts as real subprocesses; leftovers are killed at the end."""

    def __init__(self, tmp: Path, broker_url: str) -> None:
        self.tmp, self.broker_url = tmp, broker_url
        self.started: list[Proc] = []

    def start(self, script: str, *args: str, http_port: int | None = None) -> Proc:
        n = len(self.started)
        out, err = self.tmp / f"{script}-{n}.out", self.tmp / f"{script}-{n}.err"
        with out.open("wb") as o, err.open("wb") as e:
            popen = subprocess.Popen([str(BIN / script), *args], stdout=o, stderr=e)
        proc = Proc(popen, out, err, http_port)
        self.started.append(proc)
        return proc

    def streamer(self, source: Path, *args: str) -> Proc:
        return self.start(
            "ferry-streamer",
            str(source),
            "--broker-url",
            self.broker_url,
            "--queue",
            QUEUE,
            "--progress-every",
            "0.5",
            *args,
        )

    def collector(self, storage: str, *args: str) -> Proc:
        port = lasting_port()
        return self.start(
            "ferry-collector",
            "--broker-url",
            self.broker_url,
            "--queue",
            QUEUE,
            "--group",
            GROUP,
            "--storage",
            storage,
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(port),
            "--consumer",
            f"collector-{len(self.started)}",
            "--max-in-flight",
            "100",
            *args,
            http_port=port,
        )

    def kill_all(self) -> None:
        for p in self.started:
            if p.popen.poll() is None:
                p.popen.kill()
            p.popen.wait()


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    await eventually_async(check, what, PATIENCE)


async def until_healthy(proc: Proc, what: str) -> None:
    """Wait until `proc` answers /healthz with 200 on its port; fail at once, with its
    stderr, if it exits instead (a port it could not bind, a bad flag)."""

    async def up() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"{what}: exited {proc.popen.returncode} before it answered:\n"
                                 + proc.err.read_text()[-2000:])
        return await asyncio.to_thread(answers, f"http://127.0.0.1:{proc.http_port}/healthz")

    await eventually(up, what)


def counter(text: str, name: str, **labels: str) -> float:
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.split(" ")[0] == want:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def stored(storage: str) -> list[tuple[str, str]]:
    """(row_id, message_id) of every stored sample, read with plain SQL."""
    sql = "SELECT row_id, message_id FROM telemetry_samples"
    if storage.startswith("postgresql://"):
        conn = await asyncpg.connect(storage)
        try:
            return [(r[0], r[1]) for r in await conn.fetch(sql)]
        finally:
            await conn.close()
    with sqlite3.connect(storage.removeprefix("sqlite://")) as db:
        return [(r[0], r[1]) for r in db.execute(sql)]


@pytest.fixture
def procs(tmp_path: Path, broker: Any) -> Iterator[Procs]:
    p = Procs(tmp_path, broker.url)
    yield p
    p.kill_all()


@pytest.fixture
async def client(broker: Any) -> AsyncIterator[BrokerClient]:
    async with BrokerClient(broker.url) as c:
        await c.put_queue(QUEUE)
        # Short leases and backoff, so redelivery after a kill -9 and dead-lettering of poison
        # happen within the test; the rules are the same at any length.
        await c.put_group(
            QUEUE,
            GROUP,
            GroupSettings(
                visibility_timeout_ms=2000,
                max_deliveries=3,
                nack_backoff=Backoff(initial_ms=20, multiplier=1.0, max_ms=20),
            ),
        )
        yield c


async def healthy(proc: Proc) -> None:
    await until_healthy(proc, f"{proc.popen.args} to be healthy")


async def all_done(client: BrokerClient, storage: str, rows: int) -> None:
    async def check() -> bool:
        g = await client.group_stats(QUEUE, GROUP)
        return g.lag == 0 and len(await stored(storage)) >= rows

    await eventually(check, f"{rows} rows stored and the group drained")


async def stop(*collectors: Proc) -> None:
    for c in collectors:
        c.popen.send_signal(signal.SIGTERM)
    for c in collectors:
        assert await c.exit_code() == 0, c.err.read_text()[-2000:]


async def test_sample_through_two_streamers_and_three_collectors_stored_exactly_once(
    procs: Procs, client: BrokerClient, pg_url: str, sample_rows: list[TelemetryRow]
) -> None:
    collectors = [procs.collector(pg_url) for _ in range(3)]
    for c in collectors:  # every consumer subscribed before the first message
        await healthy(c)
    # Small messages, so there are enough of them (~500) for every collector to get some.
    streamers = [
        procs.streamer(SAMPLE, "--instance-index", str(i), "--instance-count", "2",
                       "--rows-per-message", "5")
        for i in range(2)
    ]
    for s in streamers:
        assert await s.exit_code() == 0, s.err.read_text()[-2000:]
    summaries = [s.summary() for s in streamers]
    assert [x["bad"] for x in summaries] == [0, 0]
    assert all(x["published"] > 0 and x["complete"] for x in summaries)
    # Each streamer skipped exactly what the other published: the split is a partition.
    assert summaries[0]["published"] == summaries[1]["others"]
    assert sum(x["published"] for x in summaries) == len(sample_rows) == 2560

    await all_done(client, pg_url, len(sample_rows))
    rows = await stored(pg_url)
    assert sorted(r for r, _ in rows) == sorted(row_id(r) for r in sample_rows)  # each once
    assert len({m for _, m in rows}) == len(rows)
    g = await client.group_stats(QUEUE, GROUP)
    # No message was published twice; each carries up to 5 rows of one GPU.
    messages = sum(x["messages"] for x in summaries)
    assert 2560 / 5 <= messages < 2560
    assert (g.acked_total, g.dead) == (messages, 0)
    per_collector = [
        counter(await c.metrics(), "ferry_collector_messages_total", outcome="stored")
        for c in collectors
    ]
    assert sum(per_collector) == 2560
    assert sum(1 for n in per_collector if n) >= 2  # the group's consumers really competed

    # The API, as its own process, answers from what the collectors stored.
    port = lasting_port()
    api = procs.start("ferry-api", "--storage", pg_url, "--host", "127.0.0.1", "--port", str(port),
                      http_port=port)
    async with aiohttp.ClientSession() as s:
        await until_healthy(api, "ferry-api to answer")
        async with s.get(f"http://127.0.0.1:{port}/api/v1/gpus") as r:
            gpus = (await r.json())["gpus"]
        assert len(gpus) == 32
        uuid = gpus[0]["uuid"]
        url = f"http://127.0.0.1:{port}/api/v1/gpus/{uuid}/telemetry"
        async with s.get(url, params={"metric": "DCGM_FI_DEV_GPU_TEMP", "limit": "5"}) as r:
            page = await r.json()
        assert len(page["items"]) == 5 and page["next_cursor"]
        async with s.get(url, params={"start_time": "10:00"}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "invalid_parameter"
    await stop(*collectors)


async def test_kill_9_of_a_collector_mid_run_loses_and_duplicates_nothing(
    procs: Procs, client: BrokerClient, pg_url: str, sample_rows: list[TelemetryRow]
) -> None:
    # The victim writes small batches often, so it is killed between receiving, writing
    # and acking; its unacked messages come back when their leases run out.
    victim = procs.collector(pg_url, "--batch-size", "20", "--flush-interval", "0.05")
    await healthy(victim)
    # Paced, so the victim is still busy when it is killed.
    streamer = procs.streamer(SAMPLE, "--rate", "400")

    async def victim_busy() -> bool:
        try:
            text = await victim.metrics()
        except aiohttp.ClientConnectionError:
            return False  # not listening yet
        return counter(text, "ferry_collector_messages_total", outcome="stored") >= 200

    await eventually(victim_busy, "the victim to store some rows")

    async def victim_holds_leases() -> bool:
        g = await client.group_stats(QUEUE, GROUP)
        return any(c.in_flight > 0 for c in g.consumers if c.name.startswith("collector-0"))

    await eventually(victim_holds_leases, "the victim to hold unacked deliveries")
    victim.popen.kill()
    assert await victim.exit_code() == -signal.SIGKILL
    survivor = procs.collector(pg_url)
    assert await streamer.exit_code() == 0
    await all_done(client, pg_url, len(sample_rows))
    rows = await stored(pg_url)
    assert sorted(r for r, _ in rows) == sorted(row_id(r) for r in sample_rows)
    g = await client.group_stats(QUEUE, GROUP)
    assert (g.acked_total, g.dead) == (streamer.summary()["messages"], 0)
    await stop(survivor)


async def test_a_redelivery_of_rows_already_committed_stores_nothing_twice(
    procs: Procs, client: BrokerClient, pg_url: str, sample_rows: list[TelemetryRow]
) -> None:
    """A collector that committed a batch and died before acking it, made deterministic:
    the rows are committed with their message ids before any collector runs."""
    rows = sample_rows[:500]
    ids = await client.publish(
        QUEUE, [OutgoingMessage(body=body_of(r), key=r.uuid, dedup_id=row_id(r)) for r in rows]
    )
    async with store_for(pg_url) as store:
        await store.write(
            [
                NewSample(row_id(r), i, row_content(r))
                for r, i in zip(rows[:300], ids, strict=False)
            ]
        )
    collector = procs.collector(pg_url)
    await all_done(client, pg_url, len(rows))
    assert sorted(r for r, _ in await stored(pg_url)) == sorted(row_id(r) for r in rows)
    text = await collector.metrics()
    assert counter(text, "ferry_collector_messages_total", outcome="duplicate") == 300
    assert counter(text, "ferry_collector_messages_total", outcome="stored") == 200
    await stop(collector)


async def test_a_redelivered_many_rows_message_stores_each_row_once(
    procs: Procs, client: BrokerClient, pg_url: str, sample_rows: list[TelemetryRow]
) -> None:
    """A collector that committed a many-rows message and died before acking it: the rows of
    the first message are committed under their part ids before any collector runs, so
    its delivery repeats a commit, which must store nothing twice."""
    messages = messages_of([(row_content(r), "test") for r in sample_rows[:500]], 100)
    assert all(len(orjson.loads(m.body)) > 1 for m in messages)
    ids = await client.publish(QUEUE, messages)
    first = [r for r in sample_rows[:500] if r.uuid == messages[0].key]
    async with store_for(pg_url) as store:
        await store.write(
            [NewSample(row_id(r), part_id(ids[0], i), row_content(r))
             for i, r in enumerate(first)]
        )
    collector = procs.collector(pg_url)
    await all_done(client, pg_url, 500)
    rows = await stored(pg_url)
    assert sorted(r for r, _ in rows) == sorted(row_id(r) for r in sample_rows[:500])
    assert len({m for _, m in rows}) == 500
    text = await collector.metrics()
    assert counter(text, "ferry_collector_messages_total", outcome="duplicate") == len(first)
    assert counter(text, "ferry_collector_messages_total", outcome="stored") == 500 - len(first)
    g = await client.group_stats(QUEUE, GROUP)
    assert (g.acked_total, g.dead) == (len(messages), 0)
    await stop(collector)


@pytest.mark.parametrize("version", [ROWS_VERSION, ROWS_V1])
async def test_a_poison_row_of_a_many_rows_message_is_dead_lettered_on_its_own(
    procs: Procs, client: BrokerClient, pg_url: str, sample_rows: list[TelemetryRow],
    version: str,
) -> None:
    if version == ROWS_V1:  # rows as objects, as streamers before v2 published them
        good: list[Any] = [body_of(r) for r in sample_rows[:3]]
        poison: Any = {**good[0], "value": "hot"}
    else:
        good = [list(row_content(r)) for r in sample_rows[:3]]
        poison = [*good[0][:3], "hot", *good[0][4:]]
    [batch_id] = await client.publish(QUEUE, [OutgoingMessage(
        body=orjson.dumps([good[0], poison, good[1], good[2]]).decode(),
        headers={SCHEMA_HEADER: version})])
    collector = procs.collector(pg_url)

    async def dead_lettered() -> bool:
        return len((await client.dead_letters(QUEUE, GROUP)).messages) == 1

    await eventually(dead_lettered, "the poison row in the dead-letter queue")
    await all_done(client, pg_url, 3)
    assert sorted(r for r, _ in await stored(pg_url)) == sorted(
        row_id(r) for r in sample_rows[:3])
    [dead] = (await client.dead_letters(QUEUE, GROUP)).messages
    assert dead.body == poison and dead.id != batch_id  # the row alone, not its neighbours
    text = await collector.metrics()
    assert counter(text, "ferry_collector_messages_total", outcome="split") == 1
    assert counter(text, "ferry_collector_messages_total", outcome="poison") == 3  # 3 tries
    [split] = collector.logs("poison row split out")
    assert (split["id"], split["index"]) == (batch_id, 1)
    g = await client.group_stats(QUEUE, GROUP)
    assert (g.acked_total, g.dead) == (1, 1)  # the many-rows message acked, the row dead
    await stop(collector)


async def test_bad_rows_and_poison_messages_are_reported_and_poison_is_dead_lettered(
    procs: Procs, client: BrokerClient, tmp_path: Path
) -> None:
    storage = f"sqlite://{tmp_path / 'telemetry.db'}"
    poison = [{"hello": "world"}, "not even an object", {"metric_name": "DCGM_FI_DEV_GPU_UTIL"}]
    poison_ids = await client.publish(QUEUE, [OutgoingMessage(body=b) for b in poison])
    collector = procs.collector(storage)
    streamer = procs.streamer(BAD_SAMPLE)
    assert await streamer.exit_code() == 0
    summary = streamer.summary()
    assert (summary["published"], summary["bad"]) == (320, 9)
    reasons = [b["reason"] for b in summary["bad_rows"]]
    assert any("timezone" in r for r in reasons)
    assert any("expected 12 fields, got 7" in r for r in reasons)
    assert len(streamer.logs("bad row not published")) == 9

    async def dead_lettered() -> bool:
        dead = await client.dead_letters(QUEUE, GROUP)
        return len(dead.messages) == 3

    await eventually(dead_lettered, "the poison messages in the dead-letter queue")
    await all_done(client, storage, 320)
    dead = await client.dead_letters(QUEUE, GROUP)
    assert sorted(m.id for m in dead.messages) == sorted(poison_ids)
    assert len(await stored(storage)) == 320
    text = await collector.metrics()
    assert counter(text, "ferry_collector_messages_total", outcome="poison") == 9  # 3 x 3 tries
    reports = collector.logs("poison message")
    assert {r["id"] for r in reports} == set(poison_ids)
    assert any("expected a JSON object" in r["reason"] for r in reports)
    await stop(collector)


async def test_a_restarted_streamer_resumes_without_duplicates(
    procs: Procs, client: BrokerClient, tmp_path: Path, sample_rows: list[TelemetryRow]
) -> None:
    storage = f"sqlite://{tmp_path / 'telemetry.db'}"
    checkpoint = tmp_path / "streamer.checkpoint"
    # One row per message: the second run groups rows from other publish boundaries (it is
    # not paced), so only single rows make the broker's dedup of the replay exact; with
    # many-rows messages the store's row_id key alone keeps each row once.
    one = ("--rows-per-message", "1")
    first = procs.streamer(SAMPLE, "--checkpoint", str(checkpoint), "--rate", "500", *one)

    async def part_way() -> bool:
        return checkpoint.exists() and json.loads(checkpoint.read_text())["published"] >= 500

    await eventually(part_way, "the first streamer to publish 500 rows")
    first.popen.kill()  # no chance to save anything more
    await first.exit_code()
    before = json.loads(checkpoint.read_text())["published"]
    assert 500 <= before < 2560
    second = procs.streamer(SAMPLE, "--checkpoint", str(checkpoint), *one)
    assert await second.exit_code() == 0
    assert second.summary()["published"] == 2560  # cumulative over both runs
    assert second.logs("resuming")
    collector = procs.collector(storage)
    await all_done(client, storage, 2560)
    g = await client.group_stats(QUEUE, GROUP)
    assert g.acked_total == 2560  # nothing was published twice
    assert sorted(r for r, _ in await stored(storage)) == sorted(row_id(r) for r in sample_rows)
    # A third run (as a restarted pod would) finds the input done, publishes nothing and,
    # with --stay, keeps running until it is told to stop.
    third = procs.streamer(SAMPLE, "--checkpoint", str(checkpoint), "--stay")

    async def reported() -> bool:
        return bool(third.out.read_text().strip())

    await eventually(reported, "the third streamer's summary")
    assert third.summary()["published"] == 2560
    assert third.popen.poll() is None
    await stop(third)
    await stop(collector)


async def test_loop_mode_replays_the_input_shifted_in_time(
    procs: Procs, client: BrokerClient, tmp_path: Path
) -> None:
    storage = f"sqlite://{tmp_path / 'telemetry.db'}"
    collector = procs.collector(storage)
    streamer = procs.streamer(BAD_SAMPLE, "--loop", "--loops", "3")
    assert await streamer.exit_code() == 0
    assert (streamer.summary()["published"], streamer.summary()["loops"]) == (960, 3)
    await all_done(client, storage, 960)
    with sqlite3.connect(tmp_path / "telemetry.db") as db:
        times = [
            r[0] for r in db.execute("SELECT DISTINCT ts_us FROM telemetry_samples ORDER BY 1")
        ]
    # Two scrapes 30 s apart per pass; each pass starts 30 s after the previous one ended.
    assert [(t - times[0]) // 1_000_000 for t in times] == [0, 30, 60, 90, 120, 150]
    await stop(collector)


def test_streamer_and_collector_refuse_bad_arguments(tmp_path: Path) -> None:
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True)

    out = run(
        "ferry-streamer",
        str(SAMPLE),
        "--broker-url",
        "http://127.0.0.1:1",
        "--instance-index",
        "2",
        "--instance-count",
        "2",
    )
    assert out.returncode == 2 and "must be below --instance-count" in out.stderr
    out = run("ferry-streamer", str(tmp_path / "missing.csv"), "--broker-url", "http://127.0.0.1:1")
    assert out.returncode == 2 and "no such file or directory" in out.stderr
    out = run("ferry-streamer", str(SAMPLE), "--broker-url", "http://127.0.0.1:1", "--rate", "-5")
    assert out.returncode == 2 and "positive" in out.stderr
    out = run("ferry-collector", "--broker-url", "http://127.0.0.1:1", "--storage", "mysql://x")
    assert out.returncode == 2 and "unknown storage scheme" in out.stderr


async def test_sigterm_drains_what_the_collector_holds_before_exiting(
    procs: Procs, client: BrokerClient, tmp_path: Path, sample_rows: list[TelemetryRow]
) -> None:
    storage = f"sqlite://{tmp_path / 'telemetry.db'}"
    # A batch that never fills and never times out: only the drain can store these rows.
    collector = procs.collector(storage, "--batch-size", "1000", "--flush-interval", "3600")
    rows = sample_rows[:50]
    await client.publish(
        QUEUE, [OutgoingMessage(body=body_of(r), dedup_id=row_id(r)) for r in rows]
    )

    async def held() -> bool:
        g = await client.group_stats(QUEUE, GROUP)
        return g.in_flight == 50

    await eventually(held, "the collector to hold all 50 deliveries")
    assert await stored(storage) == []
    await stop(collector)
    assert len(await stored(storage)) == 50
    g = await client.group_stats(QUEUE, GROUP)
    assert (g.acked_total, g.lag) == (50, 0)  # stored and acked, not handed back
    assert collector.logs("draining")


async def test_sigterm_takes_no_new_leases_so_a_scale_in_redelivers_nothing(
    procs: Procs, client: BrokerClient, tmp_path: Path, sample_rows: list[TelemetryRow]
) -> None:
    """Regression: the drain acked what the collector held, which made room, and the broker
    pushed it more deliveries that the exit then handed back (delivered twice)."""
    storage = f"sqlite://{tmp_path / 'telemetry.db'}"
    collector = procs.collector(storage, "--max-in-flight", "10", "--batch-size", "10")
    await healthy(collector)
    await client.publish(
        QUEUE, [OutgoingMessage(body=body_of(r), dedup_id=row_id(r)) for r in sample_rows]
    )

    async def working() -> bool:
        return (await client.group_stats(QUEUE, GROUP)).acked_total > 0

    await eventually(working, "the collector to store its first batch")
    await stop(collector)  # in the middle of the backlog, holding up to 10 deliveries
    g = await client.group_stats(QUEUE, GROUP)
    assert g.in_flight == 0
    assert 0 < g.depth == len(sample_rows) - g.acked_total, "stopped after the backlog"
    rest = await client.receive(QUEUE, GROUP, "next", max=1000, wait_ms=5000)
    assert rest
    assert {d.delivery_count for d in rest} == {1}  # none delivered before


async def test_an_uploaded_csv_is_validated_published_and_stored_once(
    procs: Procs, client: BrokerClient, tmp_path: Path
) -> None:
    storage = f"sqlite://{tmp_path / 'telemetry.db'}"
    collector = procs.collector(storage)
    port = lasting_port()
    uploader = procs.start(
        "ferry-streamer",
        "--broker-url",
        procs.broker_url,
        "--queue",
        QUEUE,
        "--http-host",
        "127.0.0.1",
        "--http-port",
        str(port),
        http_port=port,
    )
    url = f"http://127.0.0.1:{port}/api/v1/upload"
    async with aiohttp.ClientSession() as s:
        await until_healthy(uploader, "the upload endpoint")
        body = BAD_SAMPLE.read_bytes()
        for _ in range(2):  # the second upload of the same rows stores nothing new
            async with s.post(url, data=body, headers={"Content-Type": "text/csv"}) as r:
                assert r.status == 200
                result = await r.json()
            assert (result["published"], result["bad"]) == (320, 9)
        async with s.post(url, data=b"not,a,dcgm,file\n1,2,3,4\n") as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "invalid_csv"
    await all_done(client, storage, 320)
    assert len(await stored(storage)) == 320
    await stop(collector, uploader)


async def test_two_collectors_on_one_machine_do_not_collide_on_the_metrics_port(
    procs: Procs, client: BrokerClient, tmp_path: Path
) -> None:
    """Without --metrics-port each takes a free port and logs it (it was 9102 for both)."""
    storage = f"sqlite://{tmp_path / 'telemetry.db'}"
    pair = [
        procs.start("ferry-collector", "--broker-url", procs.broker_url, "--queue", QUEUE,
                    "--group", GROUP, "--storage", storage, "--metrics-host", "127.0.0.1",
                    "--consumer", f"c{n}")
        for n in range(2)
    ]

    async def both_collecting() -> bool:
        assert all(p.popen.poll() is None for p in pair), [p.err.read_text() for p in pair]
        return all(p.logs("collecting") for p in pair)

    await eventually(both_collecting, "both collectors to log 'collecting'")
    for p in pair:
        p.http_port = int(p.logs("collecting")[0]["metrics_port"])
        await healthy(p)
    assert pair[0].http_port != pair[1].http_port
