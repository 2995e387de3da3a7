"""What each `ferry` command does: broker calls through the client, output through tables."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from itertools import islice
from typing import IO, Any, TextIO

import orjson
from pydantic import BaseModel

from ferry.broker.cli import tables
from ferry.broker.cli.lines import body_of, line_of
from ferry.broker.cli.progress import Progress
from ferry.broker.client import BrokerClient
from ferry.broker.models import (
    Backoff,
    Delivery,
    GroupSettings,
    HeaderFilter,
    OutgoingMessage,
    QueueSettings,
)


class UsageError(Exception):
    """Arguments that parse but do not go together: exit 2 with the message."""


Command = Callable[[BrokerClient, argparse.Namespace, TextIO], Awaitable[int]]
# Lines read per publish() call: big enough to keep many batches in flight, small
# enough that memory stays flat for any input size.
CHUNK_LINES = 20_000
ACK_BATCH = 100


def emit(out: TextIO, args: argparse.Namespace, value: Any, text: Callable[[], str]) -> None:
    """Print `value` as JSON with --json, else the readable `text()`."""
    if args.json:
        out.write(dumps(value) + "\n")
    else:
        out.write(text() + "\n")


def dumps(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options of these names that were given (the broker's defaults stand for the rest)."""
    return {n: v for n in names if (v := getattr(args, n)) is not None}


def now_ms() -> int:
    return int(time.time() * 1000)


# --- queues and groups -----------------------------------------------------------


async def queue_create(client: BrokerClient, args: argparse.Namespace, out: TextIO) -> int:
    settings = QueueSettings.model_validate(_given(
        args, "max_message_bytes", "retention_ms", "visibility_timeout_ms", "max_deliveries",
        "dedup_window_ms", "fair"))
    stats = await client.put_queue(args.queue, settings)
    emit(out, args, stats, lambda: f"queue {stats.queue} ready\n\n" + tables.queue_report(stats))
    return 0


async def queue_list(client: BrokerClient, args: argparse.Namespace, out: TextIO) -> int:
    queues = await client.list_queues()
    emit(out, args, queues, lambda: tables.queues_table(queues))
    return 0


async def queue_stats(client: BrokerClient, args: argparse.Namespace, out: TextIO) -> int:
    stats = await client.queue_stats(args.queue)
    emit(out, args, stats, lambda: tables.queue_report(stats))
    return 0


async def queue_delete(client: BrokerClient, args: argparse.Namespace, out: TextIO) -> int:
    await client.delete_queue(args.queue)
    emit(out, args, {"deleted": args.queue}, lambda: f"queue {args.queue} deleted")
    return 0


async def group_create(client: BrokerClient, args: argparse.Namespace, out: TextIO) -> int:
    given: dict[str, Any] = _given(args, "start_at", "visibility_timeout_ms", "max_deliveries")
    backoff = {k: v for k in ("initial_ms", "multiplier", "max_ms")
               if (v := getattr(args, f"backoff_{k}")) is not None}
    if backoff:
        given["nack_backoff"] = Backoff.model_validate(backoff)
    if args.match or args.prefix:
        given["filter"] = HeaderFilter(match=dict(args.match), prefix=dict(args.prefix))
    stats = await client.put_group(args.queue, args.group, GroupSettings.model_validate(given))
    emit(
        out,
        args,
        stats,
        lambda: (
            f"group {stats.group} on {stats.queue} ready\n\n" + tables.group_report(stats, now_ms())
        ),
    )
    return 0


async def group_delete(client: BrokerClient, args: argparse.Namespace, out: TextIO) -> int:
    await client.delete_group(args.queue, args.group)
    emit(
        out,
        args,
        {"deleted": args.group, "queue": args.queue},
        lambda: f"group {args.group} on {args.queue} deleted",
    )
    return 0


async def group_stats(client: BrokerClient, args: argparse.Namespace, out: TextIO) -> int:
    stats = await client.group_stats(args.queue, args.group)
    emit(out, args, stats, lambda: tables.group_report(stats, now_ms()))
    return 0


# --- publish and consume -----------------------------------------------------------


async def publish(client: BrokerClient, args: argparse.Namespace, out: TextIO) -> int:
    source, total = _input(args.file)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = Progress(sys.stderr, enabled=show)
    # Validated once; each line's message is a copy with its own body.
    template = OutgoingMessage(
        body=None,
        key=args.key,
        priority=args.priority,
        delay_ms=args.delay_ms,
        headers=dict(args.header),
    )
    count, read = 0, 0

    def fraction() -> float | None:
        return read / total if total else None

    try:
        for chunk in _chunks(source, CHUNK_LINES):
            read += sum(map(len, chunk))
            lines = (raw.decode("utf-8", "replace").rstrip("\r\n") for raw in chunk)
            messages = [template.model_copy(update={"body": body_of(line, text=args.text)})
                        for line in lines if line.strip()]
            # Pieces of many batches each: publish() pipelines the batches of one piece,
            # and the progress line moves between pieces.
            step = args.batch_size * 32
            for start in range(0, len(messages), step):
                piece = messages[start : start + step]
                await client.publish(args.queue, piece, batch_size=args.batch_size)
                count += len(piece)
                progress.update(count, fraction())
    finally:
        if args.file:
            source.close()
    progress.finish(count, fraction())
    elapsed = time.monotonic() - progress.started
    rate = count / elapsed if elapsed > 0 else 0.0
    summary = {"published": count, "seconds": round(elapsed, 3), "msgs_per_s": round(rate, 1)}
    emit(
        out,
        args,
        summary,
        lambda: (
            f"published {count:,} messages to {args.queue} in {elapsed:.2f}s ({rate:,.0f} msg/s)"
        ),
    )
    return 0


def _input(path: str | None) -> tuple[IO[bytes], int]:
    """The lines to publish and their size in bytes (0: unknown, stdin)."""
    if path is None:
        return sys.stdin.buffer, 0
    source = open(path, "rb")  # noqa: SIM115 - closed by publish()
    return source, os.fstat(source.fileno()).st_size


def _chunks(source: IO[bytes], size: int) -> Iterator[list[bytes]]:
    while chunk := list(islice(source, size)):
        yield chunk


async def consume(client: BrokerClient, args: argparse.Namespace, out: TextIO) -> int:
    name = args.consumer or f"ferry-cli-{os.getpid()}"
    count = 0
    printed: list[Delivery] = []  # printed, not yet acked
    consumer = client.consumer(
        args.queue, args.group, name, mode=args.mode, max_in_flight=min(args.max or 100, 100)
    )
    async with consumer:
        while args.max is None or count < args.max:
            # Ack what was printed in one call, before waiting for more.
            if printed and (consumer.buffered == 0 or len(printed) >= ACK_BATCH):
                await consumer.ack(*printed)
                printed = []
            try:
                delivery = await asyncio.wait_for(anext(consumer), args.idle)
            except (StopAsyncIteration, TimeoutError):
                break
            if args.json:
                out.write(orjson.dumps(delivery.model_dump(mode="json")).decode() + "\n")
            else:
                out.write(line_of(delivery.body) + "\n")
            out.flush()
            if args.ack:
                printed.append(delivery)
            count += 1
        if printed:
            await consumer.ack(*printed)
    verb = "acked" if args.ack else "handed back"
    print(f"consumed {count:,} messages from {args.queue}/{args.group} ({verb})", file=sys.stderr)
    return 0


# --- dead letters and messages ----------------------------------------------------------


async def dead_list(client: BrokerClient, args: argparse.Namespace, out: TextIO) -> int:
    page = await client.dead_letters(args.queue, args.group, limit=args.limit, cursor=args.cursor)
    emit(out, args, page, lambda: tables.dead_table(page, now_ms()))
    return 0


async def dead_redrive(client: BrokerClient, args: argparse.Namespace, out: TextIO) -> int:
    count = await client.redrive(args.queue, args.group, args.ids or None)
    emit(
        out,
        args,
        {"redriven": count},
        lambda: f"redrove {count:,} dead letters back to {args.queue}/{args.group}",
    )
    return 0


async def message(client: BrokerClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.priority is None:
        info = await client.message(args.queue, args.id)
    else:
        info = await client.set_priority(args.queue, args.id, args.priority)
    emit(out, args, info, lambda: tables.message_report(info, now_ms()))
    return 0


async def browse(client: BrokerClient, args: argparse.Namespace, out: TextIO) -> int:
    state = args.state.replace("-", "_") if args.state else None
    if state and not args.group:
        raise UsageError("--state needs --group: a state is a group's")
    page = await client.browse(args.queue, limit=args.limit, cursor=args.cursor,
                               group=args.group, state=state, key=args.key,
                               priority=args.priority)
    emit(out, args, page, lambda: tables.messages_table(page, now_ms()))
    return 0


async def cancel(client: BrokerClient, args: argparse.Namespace, out: TextIO) -> int:
    for mid in args.ids:
        await client.cancel(args.queue, mid)
    n = len(args.ids)
    emit(out, args, {"cancelled": args.ids},
         lambda: f"cancelled {n:,} message{'s' if n != 1 else ''} in {args.queue}")
    return 0


async def purge(client: BrokerClient, args: argparse.Namespace, out: TextIO) -> int:
    where = f"{args.queue}/{args.group}" if args.group else f"every group of {args.queue}"
    if not args.yes:
        raise UsageError(f"purge removes the ready messages of {where}: add --yes to do it")
    n = await client.purge(args.queue, args.group)
    emit(out, args, {"purged": n}, lambda: f"purged {n:,} ready messages of {where}")
    return 0


COMMANDS: dict[tuple[str, str | None], Command] = {
    ("queue", "create"): queue_create,
    ("queue", "list"): queue_list,
    ("queue", "stats"): queue_stats,
    ("queue", "delete"): queue_delete,
    ("group", "create"): group_create,
    ("group", "delete"): group_delete,
    ("group", "stats"): group_stats,
    ("publish", None): publish,
    ("consume", None): consume,
    ("dead", "list"): dead_list,
    ("dead", "redrive"): dead_redrive,
    ("message", None): message,
    ("browse", None): browse,
    ("cancel", None): cancel,
    ("purge", None): purge,
}
