"""GET /metrics: request counters and latencies, store commits, and queue/group figures."""

from __future__ import annotations

import time
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ferry.broker.transport.errors import Handler
from ferry.broker.transport.runtime import Runtime, now_ms

routes = web.RouteTableDef()
REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)
REQUESTS = web.AppKey("metrics_requests", Counter)
LATENCY = web.AppKey("metrics_latency", Histogram)


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
        yield from (published, stored, acked, *gauges.values(), commits, writes, cache)


def install(app: web.Application, rt: Runtime) -> None:
    registry = CollectorRegistry()
    registry.register(BrokerCollector(rt))
    app[REGISTRY] = registry
    app[REQUESTS] = Counter(
        "ferry_http_requests", "HTTP requests", ["route", "method", "status"], registry=registry
    )
    app[LATENCY] = Histogram(
        "ferry_http_request_duration_seconds", "HTTP request latency", ["route"],
        registry=registry,
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 60),
    )
    commit = Histogram(
        "ferry_store_commit_seconds", "one group commit in the committer: SQL and fsync",
        registry=registry, buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
    )
    rt.store.writer.on_batch = lambda _items, seconds: commit.observe(seconds)
    app.middlewares.append(metrics_middleware)
    app.add_routes(routes)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    t0 = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    finally:
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "unmatched"
        request.app[REQUESTS].labels(route, request.method, str(status)).inc()
        request.app[LATENCY].labels(route).observe(time.perf_counter() - t0)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})
