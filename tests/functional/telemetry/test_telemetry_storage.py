"""The storage contract, run against both engines (SQLite file, real PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ferry.telemetry.generator.fleet import samples
from ferry.telemetry.parsing.rows import TelemetryRow, row_id
from ferry.telemetry.storage.base import Store
from ferry.telemetry.storage.opening import store_for
from ferry.telemetry.storage.records import NewSample, Position, Sample, SampleQuery, new_sample

pytestmark = pytest.mark.functional

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def fleet_rows(scrapes: int = 3) -> list[TelemetryRow]:
    return list(
        samples(
            hosts=2,
            gpus_per_host=2,
            scrapes=scrapes,
            start=T0,
            interval=timedelta(seconds=30),
            seed=3,
        )
    )


def as_samples(rows: list[TelemetryRow], prefix: str = "m") -> list[Sample]:
    return [Sample(row_id=row_id(r), message_id=f"{prefix}-{i}", row=r) for i, r in enumerate(rows)]


def new(samples: list[Sample]) -> list[NewSample]:
    return [new_sample(s) for s in samples]


async def test_write_then_read_back_the_same_rows(store: Store) -> None:
    rows = fleet_rows()
    assert await store.write(new(as_samples(rows))) == len(rows)
    assert await store.count() == len(rows)
    uuid = rows[0].uuid
    got = await store.samples(SampleQuery(gpu_uuid=uuid, limit=10_000))
    expected = sorted((r for r in rows if r.uuid == uuid), key=lambda r: (r.ts_us, row_id(r)))
    assert [s.row for s in got] == expected


async def test_redelivery_and_replay_do_not_duplicate(store: Store) -> None:
    batch = as_samples(fleet_rows())
    await store.write(new(batch))
    # Same message ids (a redelivery) and new message ids for the same rows (a replay).
    assert await store.write(new(batch[:5])) == 0
    assert await store.write(new(as_samples([s.row for s in batch[:5]], prefix="later"))) == 0
    # A batch mixing new and stored rows stores only the new ones.
    extra = as_samples(fleet_rows(scrapes=4), prefix="x")
    assert await store.write(new(extra)) == len(extra) - len(batch)
    assert await store.count() == len(extra)


async def test_concurrent_writers_of_overlapping_batches_store_each_row_once(
    store_url: str,
) -> None:
    rows = as_samples(fleet_rows(scrapes=6))
    stores = [store_for(store_url) for _ in range(3)]
    for s in stores:
        await s.open()
    try:
        # Three writers, overlapping slices, reversed orders: the worst case for locks.
        slices = [rows[: 2 * len(rows) // 3], rows[len(rows) // 3 :], list(reversed(rows))]
        writes = (s.write(new(b)) for s, b in zip(stores, slices, strict=True))
        inserted = await asyncio.gather(*writes)
        assert sum(inserted) == len(rows)
        assert await stores[0].count() == len(rows)
    finally:
        for s in stores:
            await s.close()


async def test_gpus_summarise_host_model_index_and_last_seen(store: Store) -> None:
    rows = fleet_rows()
    await store.write(new(as_samples(rows)))
    gpus = await store.gpus()
    assert len(gpus) == 4
    assert [(g.hostname, g.gpu_index) for g in gpus] == sorted(
        (g.hostname, g.gpu_index) for g in gpus
    )
    by_uuid = {g.uuid: g for g in gpus}
    for r in rows:
        g = by_uuid[r.uuid]
        assert (g.hostname, g.model_name, g.gpu_index, g.device) == (
            r.hostname,
            r.model_name,
            r.gpu_id,
            r.device,
        )
    assert {g.last_seen for g in gpus} == {T0 + timedelta(seconds=60)}
    assert {g.first_seen for g in gpus} == {T0}
    # An older batch arriving late does not move last_seen back.
    older = [r.model_copy(update={"timestamp": T0 - timedelta(hours=1)}) for r in rows[:3]]
    await store.write(new(as_samples(older, prefix="old")))
    g = await store.gpu(rows[0].uuid)
    assert g is not None
    assert (g.first_seen, g.last_seen) == (T0 - timedelta(hours=1), T0 + timedelta(seconds=60))
    assert await store.gpu("GPU-00000000-0000-0000-0000-000000000000") is None


async def test_filters_by_metric_and_half_open_time_range(store: Store) -> None:
    rows = fleet_rows(scrapes=4)
    await store.write(new(as_samples(rows)))
    uuid = rows[0].uuid
    q = SampleQuery(
        gpu_uuid=uuid,
        metric="DCGM_FI_DEV_GPU_TEMP",
        start=T0 + timedelta(seconds=30),
        end=T0 + timedelta(seconds=90),
    )
    got = await store.samples(q)
    assert [s.row.timestamp for s in got] == [
        T0 + timedelta(seconds=30),
        T0 + timedelta(seconds=60),
    ]
    assert {s.row.metric_name for s in got} == {"DCGM_FI_DEV_GPU_TEMP"}
    assert await store.samples(q.model_copy(update={"metric": "DCGM_FI_DEV_NOPE"})) == []


async def test_keyset_paging_visits_every_sample_once_in_order(store: Store) -> None:
    rows = fleet_rows(scrapes=5)
    await store.write(new(as_samples(rows)))
    uuid = rows[0].uuid
    seen: list[Sample] = []
    after = None
    while True:
        page = await store.samples(SampleQuery(gpu_uuid=uuid, limit=7, after=after))
        if not page:
            break
        seen += page
        after = Position(ts_us=page[-1].row.ts_us, row_id=page[-1].row_id)
    everything = await store.samples(SampleQuery(gpu_uuid=uuid, limit=10_000))
    assert seen == everything
    assert len(seen) == len([r for r in rows if r.uuid == uuid])


async def test_close_twice_is_safe(store_url: str) -> None:
    s = store_for(store_url)
    await s.open()
    await s.ping()
    await s.close()
    await s.close()
