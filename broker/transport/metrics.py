"""GET /metrics: request counters and latencies, store commits, and queue/group figures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ferry.broker.core import GroupFigures
from ferry.broker.models import ErrorCode
from ferry.broker.transport.runtime import RUNTIME, Runtime, in_chunks, now_ms
from ferry.kit.health import request_metrics

REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


@dataclass(frozen=True, slots=True)
class GroupRow:
    name: str
    figures: GroupFigures
    acked_total: int
    purged_total: int
    filtered_total: int
    consumers: int


@dataclass(frozen=True, slots=True)
class QueueRow:
    name: str
    published_total: int
    live: int
    dropped_total: int
    cancelled_total: int
    groups: list[GroupRow]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What /metrics reports of the core, read on the event loop a chunk at a time."""

    queues: list[QueueRow]
    commits: int
    writes: int
    cache_hits: int
    cache_misses: int


async def snapshot(rt: Runtime) -> Snapshot:
    now = now_ms()
    queues = [
        QueueRow(q.name, q.published_total, q.live, q.dropped_total, q.cancelled_total, [
            GroupRow(gname, g.figures(now), g.acked_total, g.purged_total,
                     g.filtered_total, len(g.leases.consumers))
            for gname, g in q.groups.items()
        ])
        async for q in in_chunks(rt, list(rt.core.queues))
    ]
    writer, bodies = rt.store.writer, rt.store.bodies
    return Snapshot(queues, writer.batches, writer.items, bodies.hits, bodies.misses)


# (family, name, help, value): one series per queue, then one per group of a queue.
Family = type[CounterMetricFamily | GaugeMetricFamily]
_PER_QUEUE: list[tuple[Family, str, str, Callable[[QueueRow], float]]] = [
    (CounterMetricFamily, "ferry_messages_published", "messages stored by publishes",
     lambda q: q.published_total),
    (GaugeMetricFamily, "ferry_queue_messages", "messages stored", lambda q: q.live),
    (CounterMetricFamily, "ferry_messages_dropped",
     "messages let go at maxDepth (overflow drop_oldest)", lambda q: q.dropped_total),
    (CounterMetricFamily, "ferry_messages_cancelled", "messages cancelled for every group "
     "(DELETE, or a purge of a queue without groups)", lambda q: q.cancelled_total),
]
_PER_GROUP: list[tuple[Family, str, str, Callable[[GroupRow], float]]] = [
    (CounterMetricFamily, "ferry_messages_acked", "acks per group", lambda g: g.acked_total),
    (CounterMetricFamily, "ferry_messages_purged", "ready messages purged per group",
     lambda g: g.purged_total),
    (CounterMetricFamily, "ferry_messages_filtered", "messages a group's header filter skipped "
     "(never delivered to it)", lambda g: g.filtered_total),
    (GaugeMetricFamily, "ferry_group_depth", "messages ready for delivery",
     lambda g: g.figures.depth),
    (GaugeMetricFamily, "ferry_group_in_flight", "messages leased and not acked",
     lambda g: g.figures.in_flight),
    (GaugeMetricFamily, "ferry_group_delayed", "messages waiting for their time",
     lambda g: g.figures.delayed),
    (GaugeMetricFamily, "ferry_group_dead", "dead letters", lambda g: g.figures.dead),
    (GaugeMetricFamily, "ferry_group_lag", "messages not yet acked or dead-lettered",
     lambda g: g.figures.depth + g.figures.in_flight + g.figures.delayed),
    (GaugeMetricFamily, "ferry_group_oldest_ready_age_seconds", "age of the oldest ready message",
     lambda g: g.figures.oldest_ready_age_ms / 1e3),
    (GaugeMetricFamily, "ferry_group_consumers", "consumers seen in the last hour",
     lambda g: g.consumers),
]


class BrokerCollector(Collector):
    """The queue and group figures of one snapshot (formatted off the event loop)."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        per_queue = [(family(name, doc, labels=["queue"]), value)
                     for family, name, doc, value in _PER_QUEUE]
        per_group = [(family(name, doc, labels=["queue", "group"]), value)
                     for family, name, doc, value in _PER_GROUP]
        for q in self.snap.queues:
            for metric, of_queue in per_queue:
                metric.add_metric([q.name], of_queue(q))
            for g in q.groups:
                for metric, of_group in per_group:
                    metric.add_metric([q.name, g.name], of_group(g))
        commits = CounterMetricFamily("ferry_store_commits", "store transactions (fsyncs)")
        commits.add_metric([], self.snap.commits)
        writes = CounterMetricFamily("ferry_store_writes", "requests made durable by commits")
        writes.add_metric([], self.snap.writes)
        cache = CounterMetricFamily(
            "ferry_store_document_reads", "documents read for deliveries", labels=["source"])
        cache.add_metric(["cache"], self.snap.cache_hits)
        cache.add_metric(["disk"], self.snap.cache_misses)
        yield from (m for m, _ in per_queue)
        yield from (m for m, _ in per_group)
        yield from (commits, writes, cache)


def format_snapshot(snap: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(snap))
    return generate_latest(registry)


def install(app: web.Application, rt: Runtime) -> None:
    registry = CollectorRegistry()  # the request and commit metrics; the core's are snapshots
    app[REGISTRY] = registry
    commit = Histogram(
        "ferry_store_commit_seconds", "one group commit in the committer: SQL and fsync",
        registry=registry, buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
    )
    rt.store.writer.on_batch = lambda _items, seconds: commit.observe(seconds)
    app.middlewares.append(request_metrics(
        registry, "ferry_http",
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 60)))
    if rt.tokens is not None:
        registry.register(RefusalCollector(rt))
    registry.register(MemoryCollector(rt))
    app.router.add_get("/metrics", metrics)


class MemoryCollector(Collector):
    """The shared memory budget (memory.py): how much of it requests hold now, and how
    many were answered 503 because it was spent."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        budget = self.rt.memory
        yield GaugeMetricFamily("ferry_memory_budget_bytes", "--memory-budget-bytes",
                                value=budget.limit)
        yield GaugeMetricFamily("ferry_memory_reserved_bytes", "bytes of the memory budget "
                                "held by request bodies, frames and batches now",
                                value=budget.used)
        yield CounterMetricFamily("ferry_memory_refusals", "requests and frames answered "
                                  "503 because the memory budget was spent", value=budget.refused)


class RefusalCollector(Collector):
    """Requests refused by the token check, per reason (never per token: no secret in a
    label, and no label per token either)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "ferry_auth_refusals", "requests and WebSocket frames refused: unauthorized (401), "
            "forbidden (403), rate_limited (429)", labels=["reason"])
        counts = self.rt.tokens.refusals if self.rt.tokens is not None else {}
        for reason in (ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.RATE_LIMITED):
            refused.add_metric([reason.value], counts.get(reason, 0))
        yield refused


async def metrics(request: web.Request) -> web.Response:
    """The core's figures are read a chunk of queues at a time and formatted in a thread.

    10,000 queues blocked the event loop for 0.5-0.8 s when read and formatted at once.
    """
    snap = await snapshot(request.app[RUNTIME])
    core = await asyncio.get_running_loop().run_in_executor(None, format_snapshot, snap)
    body = core + generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
