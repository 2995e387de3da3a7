"""Scenario (5) `pipeline`: the telemetry pipeline at the speed of its sink.

Generated DCGM CSV -> `ferry-streamer` processes (unpaced, splitting the input) -> a
`ferry-broker` (embedded engine, its defaults) -> `ferry-collector` processes (one
consumer group) -> PostgreSQL (one server, fsync on). Every process is the real console
script. The figure is rows / seconds from starting the streamers until PostgreSQL holds
every row; the counts check each generated row is stored exactly once (row ids against
the CSV, one message id per row) and the group ends with nothing unacked or dead.

The physical limit, measured in the same run on the same server: the same rows (read
back from the pipeline's table) COPYed by this one process into an empty copy of the
same table (same schema and indexes) in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import aiohttp
import asyncpg
from testsupport.ports import free_port

from bench.drivers.ferry import FerryDriver
from bench.drivers.postgres_pair import PgPair
from bench.processes import ServerError, ServerProcess, wait_until
from bench.profiling import Profiler
from bench.results import Counts, Result
from bench.settings import BenchConfig, Scenario
from ferry.broker.client import BrokerClient
from ferry.telemetry.parsing.rows import parse_record, record_of, row_id
from ferry.telemetry.storage.postgres import PostgresStore
from ferry.telemetry.streamer.reading import CsvFile

QUEUE, GROUP = "telemetry", "collectors"
HOSTS, GPUS_PER_HOST, METRICS = 20, 8, 10
ROWS_PER_SCRAPE = HOSTS * GPUS_PER_HOST * METRICS  # the generator's fleet, one scrape
DURABILITY = "broker: its default (fsync before the answer); PostgreSQL: fsync on"
SETTLE_S = 30.0
POLL_S = 0.05


def _exe(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(f"{name} is not installed next to {sys.executable}")
    return found


def generate(path: Path, rows: int) -> set[str]:
    """Write whole scrapes of the generated fleet (at least one); the row ids they hold."""
    scrapes = max(1, rows // ROWS_PER_SCRAPE)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([_exe("ferry-telemetry"), "generate", "--out", str(path), "--hosts",
                    str(HOSTS), "--gpus-per-host", str(GPUS_PER_HOST), "--scrapes",
                    str(scrapes)], check=True, capture_output=True)
    f = CsvFile(path)
    return {row_id(parse_record(record_of(r.fields, f.positions))) for r in f.records()}


async def _healthy(port: int) -> bool:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/healthz") as r:
        return r.status == 200


async def _count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM telemetry_samples"))


class Pipeline:
    """The processes of one pipeline run, in `workdir`; stop() ends every one of them."""

    def __init__(self, cfg: BenchConfig, workdir: Path) -> None:
        self.cfg = cfg
        self.workdir = workdir
        self.pg = PgPair(workdir / "pg", standby=False)
        self.broker = FerryDriver(workdir / "broker")
        self.servers: list[ServerProcess] = []  # PostgreSQL
        self.collectors: list[ServerProcess] = []
        self.streamers: list[ServerProcess] = []

    async def start(self) -> None:
        """PostgreSQL with databases `pipeline` and `rawcopy` (schema created), the broker
        with the queue and group, and the collectors, once each answers /healthz."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        await self.pg.start(self.servers)
        conn = await asyncpg.connect(self.pg.dsn)
        try:
            for db in ("pipeline", "rawcopy"):
                await conn.execute(f"CREATE DATABASE {db}")
        finally:
            await conn.close()
        for db in ("pipeline", "rawcopy"):
            store = PostgresStore(self.pg.dsn_for(db))
            await store.open()
            await store.close()
        await self.broker.start()
        async with BrokerClient(self.broker.url) as client:
            await client.put_queue(QUEUE)
            await client.put_group(QUEUE, GROUP)
        for i in range(self.cfg.pipeline_collectors):
            port = free_port()
            proc = ServerProcess(f"collector-{i}", [
                _exe("ferry-collector"), "--broker-url", self.broker.url, "--queue", QUEUE,
                "--group", GROUP, "--consumer", f"collector-{i}", "--storage",
                self.pg.dsn_for("pipeline"), "--metrics-host", "127.0.0.1", "--metrics-port",
                str(port), "--log-level", "warning"], self.workdir / f"collector-{i}.log")
            proc.start()
            self.collectors.append(proc)
            await wait_until(partial(_healthy, port), proc, 120, "/healthz 200")

    def start_streamers(self, csv: Path) -> None:
        n = self.cfg.pipeline_streamers
        for i in range(n):
            proc = ServerProcess(f"streamer-{i}", [
                _exe("ferry-streamer"), str(csv), "--broker-url", self.broker.url, "--queue",
                QUEUE, "--instance-index", str(i), "--instance-count", str(n),
                "--rows-per-message", str(self.cfg.pipeline_rows_per_message),
                "--log-level", "warning"], self.workdir / f"streamer-{i}.log")
            proc.start()
            self.streamers.append(proc)

    async def streamers_done(self, limit_s: float) -> None:
        """Until every streamer exited 0 (each does once its part is published)."""
        deadline = time.monotonic() + limit_s
        while any(s.returncode() is None for s in self.streamers):
            self.check()
            if time.monotonic() > deadline:
                raise ServerError(f"a streamer still runs {limit_s:.0f}s after the last row")
            await asyncio.sleep(POLL_S)
        self.check()

    def pids(self) -> dict[str, int]:
        """The pipeline's Python processes by name (the broker's committer is its child)."""
        assert self.broker.server is not None
        return {"broker": self.broker.server.pid,
                **{p.name: p.pid for p in (*self.streamers, *self.collectors)}}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU used so far by the broker, the collectors and PostgreSQL (process trees; a
        server's backends count while they live). The streamers are counted apart: they
        exit before the end (see Pipeline's caller)."""
        return {
            "broker": self.broker.cpu_seconds(),
            "collectors": sum(c.cpu_seconds() for c in self.collectors),
            "postgres": sum(s.cpu_seconds() for s in self.servers),
        }

    def check(self) -> None:
        """Fail fast: a collector that died, or a streamer that exited non-zero."""
        for c in self.collectors:
            c.check_alive()
        for s in self.streamers:
            if s.returncode() not in (None, 0):
                s.check_alive()

    async def stop(self) -> None:
        for p in (*self.streamers, *self.collectors):
            await p.stop()
        await self.broker.stop()
        for p in reversed(self.servers):
            await p.stop()


async def _stored_once(dsn: str, expected: int, limit_s: float, check: Pipeline) -> float:
    """Seconds until the table holds `expected` rows (polled), or the limit."""
    t0 = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        while await _count(conn) < expected:
            check.check()
            if time.perf_counter() - t0 > limit_s:
                raise TimeoutError(f"not every row stored within {limit_s:.0f}s")
            await asyncio.sleep(POLL_S)
    finally:
        await conn.close()
    return time.perf_counter()


async def _lag(url: str) -> tuple[int, int]:
    """The group's unacked and dead counts once nothing is unacked, or after SETTLE_S."""
    deadline = time.monotonic() + SETTLE_S
    async with BrokerClient(url) as client:
        while True:
            g = await client.group_stats(QUEUE, GROUP)
            if g.lag == 0 or time.monotonic() > deadline:
                return g.lag, g.dead
            await asyncio.sleep(0.1)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


async def raw_copy(source: str, target: str) -> tuple[int, float]:
    """The pipeline's rows COPYed into the empty `target` table in one transaction by this
    process: (rows, rows/s), the commit included."""
    conn = await asyncpg.connect(source)
    try:
        rows = [tuple(r) for r in await conn.fetch("SELECT * FROM telemetry_samples")]
    finally:
        await conn.close()
    conn = await asyncpg.connect(target)
    try:
        t0 = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table("telemetry_samples", records=rows)
        seconds = time.perf_counter() - t0
        copied = await _count(conn)
    finally:
        await conn.close()
    return copied, copied / seconds


async def pipeline(
    cfg: BenchConfig, run: int, workdir: Path, profiler: Profiler | None = None
) -> Result:
    """One run; with a profiler, every Python process of it is sampled by py-spy while the
    rows flow (run 0, left out of the medians)."""
    csv = workdir / "dcgm.csv"
    expected = await asyncio.to_thread(generate, csv, cfg.pipeline_rows)
    n = len(expected)
    res = Result(system="ferry", durability=DURABILITY, scenario=Scenario.PIPELINE,
                 body_size=cfg.pipeline_rows_per_message, run=run, messages=n)
    pipe = Pipeline(cfg, workdir)
    try:
        await pipe.start()
        dsn = pipe.pg.dsn_for("pipeline")
        cpu0, children0 = pipe.cpu_seconds(), _children_cpu()
        t0 = time.perf_counter()
        pipe.start_streamers(csv)
        sampled = (contextlib.nullcontext() if profiler is None
                   else profiler.sampling(pipe.pids(), f"pipeline-{cfg.pipeline_rows_per_message}"))
        with sampled:
            t1 = await _stored_once(dsn, n, cfg.e2e_timeout_s, pipe)
        res.seconds, res.rows_per_s = t1 - t0, n / (t1 - t0)
        await pipe.streamers_done(60)
        lag, dead = await _lag(pipe.broker.url)
        # The streamers exited and were reaped: this process's children's CPU holds theirs.
        used = {"streamers": _children_cpu() - children0,
                **{k: v - cpu0[k] for k, v in pipe.cpu_seconds().items()}}
        res.cpu_us_by_part = {k: v / n * 1e6 for k, v in used.items()}
        res.cpu_us_per_row = sum(res.cpu_us_by_part.values())
        conn = await asyncpg.connect(dsn)
        try:
            ids = [r[0] for r in await conn.fetch("SELECT row_id FROM telemetry_samples")]
            messages = int(await conn.fetchval(
                "SELECT count(DISTINCT message_id) FROM telemetry_samples"))
        finally:
            await conn.close()
        found = set(ids) & expected
        res.counts = Counts(expected=n, delivered=len(found), duplicates=len(ids) - len(found),
                            unacked_after=lag + dead)
        if len(ids) != len(found) or messages != len(ids):
            res.error = (f"{len(ids)} rows stored for {len(found)} generated ones, under "
                         f"{messages} message ids: a row stored twice or not generated")
        copied, res.copy_rows_per_s = await raw_copy(dsn, pipe.pg.dsn_for("rawcopy"))
        if copied != len(ids):
            res.error = f"raw COPY holds {copied} rows, not {len(ids)}"
        res.copy_ratio = res.rows_per_s / res.copy_rows_per_s
    finally:
        await pipe.stop()
    return res

