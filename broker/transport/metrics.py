"""GET /metrics: request counters and latencies, store commits, and queue/group figures."""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ferry.broker.transport.runtime import Runtime, now_ms
from ferry.kit.health import metrics_handler, request_metrics


class BrokerCollector(Collector):
    """Figures read from the core at scrape time (nothing to keep in sync)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        now = now_ms()
        q_labels = ["queue"]
        g_labels = ["queue", "group"]
        published = CounterMetricFamily(
            "ferry_messages_published", "messages stored by publishes", labels=q_labels)
        stored = GaugeMetricFamily("ferry_queue_messages", "messages stored", labels=q_labels)
        dropped = CounterMetricFamily(
            "ferry_messages_dropped", "messages let go at maxDepth (overflow drop_oldest)",
            labels=q_labels)
        acked = CounterMetricFamily("ferry_messages_acked", "acks per group", labels=g_labels)
        gauges = {
            name: GaugeMetricFamily(f"ferry_group_{name}", doc, labels=g_labels)
            for name, doc in (
                ("depth", "messages ready for delivery"),
                ("in_flight", "messages leased and not acked"),
                ("delayed", "messages waiting for their time"),
                ("dead", "dead letters"),
                ("lag", "messages not yet acked or dead-lettered"),
                ("oldest_ready_age_seconds", "age of the oldest ready message"),
                ("consumers", "consumers seen in the last hour"),
            )
        }
        for qname, q in self.rt.core.queues.items():
            published.add_metric([qname], q.published_total)
            stored.add_metric([qname], q.live)
            dropped.add_metric([qname], q.dropped_total)
            for gname, g in q.groups.items():
                f = g.figures(now)
                acked.add_metric([qname, gname], g.acked_total)
                labels = [qname, gname]
                gauges["depth"].add_metric(labels, f.depth)
                gauges["in_flight"].add_metric(labels, f.in_flight)
                gauges["delayed"].add_metric(labels, f.delayed)
                gauges["dead"].add_metric(labels, f.dead)
                gauges["lag"].add_metric(labels, f.depth + f.in_flight + f.delayed)
                gauges["oldest_ready_age_seconds"].add_metric(labels, f.oldest_ready_age_ms / 1e3)
                gauges["consumers"].add_metric(labels, len(g.consumers))
        writer = self.rt.store.writer
        commits = CounterMetricFamily("ferry_store_commits", "store transactions (fsyncs)")
        commits.add_metric([], writer.batches)
        writes = CounterMetricFamily("ferry_store_writes", "requests made durable by commits")
        writes.add_metric([], writer.items)
        bodies = self.rt.store.bodies
        cache = CounterMetricFamily(
            "ferry_store_document_reads", "documents read for deliveries", labels=["source"])
        cache.add_metric(["cache"], bodies.hits)
        cache.add_metric(["disk"], bodies.misses)
        yield from (published, stored, dropped, acked, *gauges.values(), commits, writes, cache)


def install(app: web.Application, rt: Runtime) -> None:
    registry = CollectorRegistry()
    registry.register(BrokerCollector(rt))
    commit = Histogram(
        "ferry_store_commit_seconds", "one group commit in the committer: SQL and fsync",
        registry=registry, buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
    )
    rt.store.writer.on_batch = lambda _items, seconds: commit.observe(seconds)
    app.middlewares.append(request_metrics(
        registry, "ferry_http",
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 60)))
    app.router.add_get("/metrics", metrics_handler(registry))
