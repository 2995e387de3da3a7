"""OpenTelemetry spans read from the SDK's in-memory exporter: the client's publish, the
broker's publish and delivery, the consumer's receive and ack, and the telemetry
collector continuing its streamer's trace. The broker runs in this process (its spans
reach the same exporter), on real sockets and its real store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fixtures.brokers import acked
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once
from testsupport.waiting import eventually_async

from ferry.broker.client import BrokerClient
from ferry.broker.models import OutgoingMessage
from ferry.broker.transport import build_app, open_runtime
from ferry.kit.serving import listening
from ferry.kit.tracing import TRACEPARENT
from ferry.telemetry.collector.collecting import Collector
from ferry.telemetry.collector.collecting import Settings as CollectorSettings
from ferry.telemetry.storage.opening import store_for
from ferry.telemetry.streamer.streaming import Settings as StreamerSettings
from ferry.telemetry.streamer.streaming import Streamer

pytestmark = pytest.mark.functional

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "dcgm_sample.csv"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The SDK configured for this test only, as a program configures it at start."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        # As opentelemetry-python's own tests reset it (opentelemetry.test.globals_test):
        # the global provider is set once per process otherwise, and later tests run
        # without an SDK.
        trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
        trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


@pytest.fixture
async def broker_url(tmp_path: Path) -> AsyncIterator[str]:
    rt = open_runtime(str(tmp_path / "broker"), asyncio.get_running_loop())
    try:
        async with listening(build_app(rt), "127.0.0.1", 0) as port:
            yield f"http://127.0.0.1:{port}"
    finally:
        rt.store.close()


def parent_of(s: ReadableSpan) -> int | None:
    return s.parent.span_id if s.parent is not None else None


def named(exporter: InMemorySpanExporter, suffix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.endswith(suffix)]


@pytest.mark.parametrize("mode", ["stream", "sse", "poll"])
async def test_client_broker_and_consumer_spans_share_the_producers_trace(
        spans: InMemorySpanExporter, broker_url: str, mode: str) -> None:
    async with BrokerClient(broker_url) as client:
        await client.put_queue("jobs")
        await client.put_group("jobs", "w")
        app = trace.get_tracer("app")
        with app.start_as_current_span("checkout") as root:
            ids = await client.publish("jobs", [OutgoingMessage(body=i) for i in range(3)])
        async with client.consumer("jobs", "w", "c", mode=mode) as c:  # type: ignore[arg-type]
            got = await acked(c, len(ids))

    client_publish = next(s for s in named(spans, "jobs publish")
                          if s.kind is trace.SpanKind.PRODUCER)
    broker_publish = next(s for s in named(spans, "jobs publish")
                          if s.kind is trace.SpanKind.SERVER)
    trace_id = root.get_span_context().trace_id
    assert client_publish.context.trace_id == trace_id
    assert parent_of(client_publish) == root.get_span_context().span_id
    assert broker_publish.context.trace_id == trace_id
    assert parent_of(broker_publish) == client_publish.context.span_id
    # The messages carry the producer's span; the broker's deliveries and the consumer's
    # receives are its children, in the same trace.
    ctx = client_publish.context
    tp = f"00-{trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    assert [d.headers[TRACEPARENT] for d in got] == [tp] * 3
    for kind in ("jobs deliver", "jobs receive"):
        found = named(spans, kind)
        assert len(found) == 3, kind
        assert all(s.context.trace_id == trace_id for s in found)
        assert all(parent_of(s) == client_publish.context.span_id for s in found)
    assert named(spans, "jobs receive")[0].kind is trace.SpanKind.CONSUMER
    assert {s.attributes["messaging.message.id"] for s in named(spans, "jobs receive")} \
        == set(ids)
    acks = named(spans, "jobs ack")
    assert len(acks) == 3 and all(s.kind is trace.SpanKind.CLIENT for s in acks)


async def test_the_collector_continues_the_streamers_trace(
        spans: InMemorySpanExporter, broker_url: str, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:41]))  # 40 rows
    async with BrokerClient(broker_url) as client, \
            store_for(f"sqlite://{tmp_path / 'telemetry.db'}") as store:
        await client.put_queue("telemetry")
        await client.put_group("telemetry", "collectors")
        stop = asyncio.Event()
        summary = await Streamer(StreamerSettings(source=rows, queue="telemetry",
                                                  rows_per_message=10), client, stop).run()
        assert summary.complete
        collector = Collector(CollectorSettings("telemetry", "collectors", "c1"), client,
                              store, stop)
        task = asyncio.create_task(collector.run())

        async def stored() -> bool:
            return collector.counts["stored"] >= 40

        await eventually_async(stored, "the collector to store the 40 rows")
        stop.set()
        await task

    publishes = [s for s in named(spans, "telemetry publish")
                 if s.kind is trace.SpanKind.PRODUCER]
    assert len(publishes) == 1  # the streamer's one publish of 4 messages
    processed = named(spans, "telemetry process")
    assert len(processed) == 4
    for s in processed:
        assert s.kind is trace.SpanKind.CONSUMER
        assert s.context.trace_id == publishes[0].context.trace_id
        assert parent_of(s) == publishes[0].context.span_id
