"""The streamer's work: read, validate, split, pace, publish, checkpoint, report."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel

from ferry.broker.client import BrokerClient
from ferry.broker.models import OutgoingMessage
from ferry.telemetry.parsing.messages import (
    ROWS_VERSION,
    SCHEMA_HEADER,
    SCHEMA_VERSION,
    row_body,
    rows_body,
    rows_dedup_id,
)
from ferry.telemetry.parsing.pacing import Pace
from ferry.telemetry.parsing.replaying import loop_span
from ferry.telemetry.parsing.rows import Content, content_id, shifted, valid_rows
from ferry.telemetry.parsing.splitting import Split
from ferry.telemetry.streamer import checkpoints
from ferry.telemetry.streamer.checkpoints import Checkpoint
from ferry.telemetry.streamer.reading import CsvFile, Record, input_files

log = logging.getLogger("ferry.telemetry.streamer")
BAD_ROWS_KEPT = 50  # the summary lists this many bad rows; the count covers all of them
YIELD_EVERY = 1000  # records between turns of the event loop (signals, /metrics)
# Rows per message by default: the broker's cost is per message, so 100 rows of one GPU
# in one message took the pipeline from ~7,500 rows/s (one row each, bound by the
# streamer) to the speed of its store (bench/README.md, "pipeline").
ROWS_PER_MESSAGE = 100


@dataclass(frozen=True)
class Settings:
    source: Path
    queue: str
    instance_index: int = 0
    instance_count: int = 1
    pace: Pace = field(default_factory=lambda: Pace(rate=None))
    loop: bool = False
    max_loops: int | None = None  # with loop: stop after this many passes
    checkpoint: Path | None = None
    progress_every: float = 2.0  # seconds between progress lines
    rows_per_message: int = ROWS_PER_MESSAGE  # 1: one message per row (the dcgm-row/v1 format)


class BadRow(BaseModel):
    file: str
    record: int
    reason: str


class Summary(BaseModel):
    instance: str
    published: int = 0
    messages: int = 0
    bad: int = 0
    others: int = 0
    loops: int = 0
    complete: bool = False
    bad_rows: list[BadRow] = []


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.published = Counter("ferry_streamer_published_rows", "rows published", registry=r)
        self.bad = Counter("ferry_streamer_bad_rows", "rows rejected by validation", registry=r)
        self.position = Gauge("ferry_streamer_loop", "current pass over the input", registry=r)


def message_of(row: Content, source: str) -> OutgoingMessage:
    return OutgoingMessage(
        body=row_body(row),
        key=row.gpu_uuid,  # a GPU's samples share a key (fair mode round-robins over GPUs)
        dedup_id=content_id(row),
        headers={SCHEMA_HEADER: SCHEMA_VERSION, "source": source},
    )


def messages_of(rows: list[tuple[Content, str]], per_message: int) -> list[OutgoingMessage]:
    """Rows (with their sources) as messages of up to `per_message` rows of one GPU each,
    in the order each GPU first appears; a GPU's rows keep their order. Pure: the same
    rows give the same messages and dedup ids, so a resumed streamer's replay is deduped."""
    if per_message == 1:
        return [message_of(row, source) for row, source in rows]
    by_gpu: dict[str, list[tuple[Content, str]]] = {}
    for item in rows:
        by_gpu.setdefault(item[0].gpu_uuid, []).append(item)
    out = []
    for uuid, items in by_gpu.items():
        for start in range(0, len(items), per_message):
            part = items[start:start + per_message]
            body = rows_body([r for r, _ in part])
            out.append(OutgoingMessage(
                body=body,
                key=uuid,
                dedup_id=rows_dedup_id(body),
                headers={SCHEMA_HEADER: ROWS_VERSION, "source": part[0][1]},
            ))
    return out


class Streamer:
    def __init__(
        self,
        settings: Settings,
        client: BrokerClient,
        stop: asyncio.Event,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.s = settings
        self.client = client
        self.stop = stop
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.summary = Summary(instance=f"{settings.instance_index}/{settings.instance_count}")
        self._sent = 0  # rows published by this process (the pace is per process)
        self._t0 = 0.0
        self._last_progress = 0.0

    async def run(self) -> Summary:
        """Stream the input; returns when done, or early (complete=False) when stopped."""
        files = [CsvFile(p) for p in input_files(self.s.source)]
        span = loop_span(self._timestamps(files)) if self.s.loop else timedelta(0)
        ck = self._load()
        self._t0 = self._last_progress = self.clock()
        while not self.stop.is_set():
            self.metrics.position.set(ck.loop)
            for f in files:
                if not await self._stream_file(f, ck, span * ck.loop):
                    return self._finish(ck, complete=False)
            if not self.s.loop:
                return self._finish(ck, complete=True)
            ck.loop += 1
            ck.done = {}
            self._save(ck)
            if self.s.max_loops is not None and ck.loop >= self.s.max_loops:
                return self._finish(ck, complete=True)
        return self._finish(ck, complete=False)

    def _load(self) -> Checkpoint:
        if self.s.checkpoint is None:
            return Checkpoint(
                instance_index=self.s.instance_index, instance_count=self.s.instance_count
            )
        ck = checkpoints.load(self.s.checkpoint, self.s.instance_index, self.s.instance_count)
        if ck.done or ck.loop:
            log.info(
                "resuming", extra={"loop": ck.loop, "done": ck.done, "published": ck.published}
            )
        return ck

    def _save(self, ck: Checkpoint) -> None:
        if self.s.checkpoint is not None:
            checkpoints.save(self.s.checkpoint, ck)

    @staticmethod
    def _timestamps(files: list[CsvFile]) -> set[datetime]:
        seen: set[datetime] = set()
        for f in files:
            i = f.positions["timestamp"]
            for rec in f.records():
                with contextlib.suppress(ValueError, IndexError):
                    ts = datetime.fromisoformat(rec.fields[i].strip())
                    if ts.tzinfo is not None:
                        seen.add(ts)
        return seen

    async def _stream_file(self, f: CsvFile, ck: Checkpoint, shift: timedelta) -> bool:
        """Publish this instance's rows of one file; False when stopped part-way.

        One publish is in flight while the next batch is read and validated (the broker's
        answer waits for its fsync); publishes still complete, and checkpoint, in order."""
        name = f.path.name
        start = ck.done.get(name, 0)
        pending: list[Record] = []
        last = start
        batch = self.s.pace.batch()
        in_flight: asyncio.Task[None] | None = None
        split = Split(f.positions, self.s.instance_index, self.s.instance_count)
        try:
            for rec in f.records():
                if rec.number <= start:
                    continue
                last = rec.number
                if rec.number % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                if not split.mine(rec.fields):
                    ck.others += 1
                    continue
                pending.append(rec)
                if len(pending) >= batch:
                    rows, bad = self._validate(f, pending, shift)
                    pending = []
                    if in_flight is not None:
                        await in_flight
                    if self.stop.is_set():
                        return False
                    in_flight = asyncio.create_task(self._publish(rows, bad, ck, name, last))
            rows, bad = self._validate(f, pending, shift)
            if in_flight is not None:
                await in_flight
            if self.stop.is_set():
                return False
            await self._publish(rows, bad, ck, name, last)
            return not self.stop.is_set()
        finally:
            if in_flight is not None and not in_flight.done():
                in_flight.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await in_flight

    @staticmethod
    def _validate(
        f: CsvFile, records: list[Record], shift: timedelta
    ) -> tuple[list[tuple[Content, str]], list[BadRow]]:
        """The records' valid rows (moved by `shift`, with their sources) and bad rows."""
        name = f.path.name
        good, bad = valid_rows([r.fields for r in records], f.positions)
        if shift:
            good = [(i, shifted(row, shift)) for i, row in good]
        rows = [(row, f"{name}:{records[i].number}") for i, row in good]
        return rows, [BadRow(file=name, record=records[i].number, reason=why) for i, why in bad]

    async def _publish(
        self,
        rows: list[tuple[Content, str]],
        bad: list[BadRow],
        ck: Checkpoint,
        name: str,
        last: int,
    ) -> None:
        for b in bad:  # counted with the publish that covers them, so a resume counts them once
            ck.bad += 1
            self.metrics.bad.inc()
            if len(self.summary.bad_rows) < BAD_ROWS_KEPT:
                self.summary.bad_rows.append(b)
            log.warning("bad row not published", extra=b.model_dump())
        if rows:
            delay = self.s.pace.delay(self._sent, self.clock() - self._t0)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
            messages = messages_of(rows, self.s.rows_per_message)
            await self.client.publish(self.s.queue, messages)
            self._sent += len(rows)
            ck.published += len(rows)
            ck.messages += len(messages)
            self.metrics.published.inc(len(rows))
        ck.done[name] = last
        self._save(ck)
        self._progress(ck, name, last)

    def _progress(self, ck: Checkpoint, name: str, last: int, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_progress < self.s.progress_every:
            return
        self._last_progress = now
        elapsed = max(now - self._t0, 1e-9)
        log.info(
            "progress",
            extra={
                "published": ck.published,
                "bad": ck.bad,
                "loop": ck.loop,
                "file": name,
                "record": last,
                "rows_per_s": round(self._sent / elapsed, 1),
            },
        )

    def _finish(self, ck: Checkpoint, *, complete: bool) -> Summary:
        self.summary.published, self.summary.bad = ck.published, ck.bad
        self.summary.messages = ck.messages
        self.summary.others, self.summary.loops = ck.others, ck.loop
        self.summary.complete = complete
        log.info(
            "finished" if complete else "stopped",
            extra={
                "published": ck.published,
                "bad": ck.bad,
                "others": ck.others,
                "loop": ck.loop,
            },
        )
        return self.summary
