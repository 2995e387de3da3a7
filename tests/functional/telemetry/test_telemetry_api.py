"""The query API over a real socket, on both storage engines, with the committed sample."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from ferry.kit.serving import listening
from ferry.telemetry.api.app import create_app
from ferry.telemetry.parsing.rows import TelemetryRow, row_id
from ferry.telemetry.storage.base import Store
from ferry.telemetry.storage.records import Sample, new_sample

pytestmark = pytest.mark.functional

T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)


@pytest.fixture
async def api(store: Store, sample_rows: list[TelemetryRow]) -> AsyncIterator[str]:
    await store.write(
        [new_sample(Sample(row_id=row_id(r), message_id=f"m{i}", row=r))
         for i, r in enumerate(sample_rows)]
    )
    async with listening(create_app(store, own_store=False), "127.0.0.1", 0) as port:
        yield f"http://127.0.0.1:{port}"


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.json()


async def test_gpus_lists_every_gpu_with_host_model_index_last_seen(
    api: str, sample_rows: list[TelemetryRow]
) -> None:
    status, body = await get(f"{api}/api/v1/gpus")
    assert status == 200
    gpus = body["gpus"]
    assert len(gpus) == 32
    expected = {(r.uuid, r.hostname, r.model_name, r.gpu_id, r.device) for r in sample_rows}
    got = {(g["uuid"], g["hostname"], g["model_name"], g["gpu_index"], g["device"]) for g in gpus}
    assert got == expected
    assert {g["last_seen"] for g in gpus} == {"2026-11-23T10:03:30Z"}
    assert {g["first_seen"] for g in gpus} == {"2026-11-23T10:00:00Z"}


async def test_telemetry_filters_by_metric_and_time(
    api: str, sample_rows: list[TelemetryRow]
) -> None:
    uuid = sample_rows[0].uuid
    url = (
        f"{api}/api/v1/gpus/{uuid}/telemetry?metric=DCGM_FI_DEV_POWER_USAGE"
        "&start_time=2026-11-23T10:01:00Z&end_time=2026-11-23T12:02:30%2B02:00"
    )
    status, body = await get(url)
    assert status == 200
    expected = [
        r
        for r in sample_rows
        if r.uuid == uuid
        and r.metric_name == "DCGM_FI_DEV_POWER_USAGE"
        and T0 + timedelta(minutes=1) <= r.timestamp < T0 + timedelta(minutes=2, seconds=30)
    ]
    assert len(expected) == 3
    assert [(i["timestamp"], i["value"]) for i in body["items"]] == [
        (r.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ"), r.value) for r in expected
    ]
    assert body["next_cursor"] is None
    assert body["gpu_uuid"] == uuid


async def test_paging_walks_all_samples_once_in_time_order(
    api: str, sample_rows: list[TelemetryRow]
) -> None:
    uuid = sample_rows[-1].uuid
    items: list[dict[str, Any]] = []
    url: str | None = f"{api}/api/v1/gpus/{uuid}/telemetry?limit=7"
    pages = 0
    while url:
        status, body = await get(url)
        assert status == 200
        assert len(body["items"]) <= 7
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        url = f"{api}/api/v1/gpus/{uuid}/telemetry?limit=7&cursor={cursor}" if cursor else None
    mine = [r for r in sample_rows if r.uuid == uuid]
    assert len(items) == len(mine) == 80
    assert pages == 12  # 11 full pages and a last one of 3
    assert [i["timestamp"] for i in items] == sorted(i["timestamp"] for i in items)
    assert sorted((i["timestamp"], i["metric_name"]) for i in items) == sorted(
        (r.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ"), r.metric_name) for r in mine
    )


@pytest.mark.parametrize(
    ("query", "code", "mentions"),
    [
        ("start_time=yesterday", "invalid_parameter", "RFC 3339"),
        ("start_time=1700000000", "invalid_parameter", "RFC 3339"),
        ("end_time=2026-11-23T10:00:00", "invalid_parameter", "RFC 3339"),
        (
            "start_time=2026-11-23T11:00:00Z&end_time=2026-11-23T10:00:00Z",
            "invalid_parameter",
            "before end_time",
        ),
        ("limit=0", "invalid_parameter", "limit"),
        ("limit=10001", "invalid_parameter", "limit"),
        ("limit=ten", "invalid_parameter", "limit"),
        ("metric=gpu_util", "invalid_parameter", "metric"),
        (
            "metric=DCGM_FI_DEV_GPU_UTIL&metric=DCGM_FI_DEV_GPU_TEMP",
            "invalid_parameter",
            "more than once",
        ),
        ("colour=red", "invalid_parameter", "colour"),
        ("cursor=not-a-cursor", "invalid_cursor", "cursor"),
    ],
)
async def test_bad_queries_get_400_with_a_machine_readable_error(
    api: str, sample_rows: list[TelemetryRow], query: str, code: str, mentions: str
) -> None:
    status, body = await get(f"{api}/api/v1/gpus/{sample_rows[0].uuid}/telemetry?{query}")
    assert status == 400
    assert body["error"]["code"] == code
    assert mentions in body["error"]["message"]


async def test_unknown_gpu_route_and_method_get_json_errors(api: str) -> None:
    status, body = await get(
        f"{api}/api/v1/gpus/GPU-00000000-0000-0000-0000-000000000000/telemetry"
    )
    assert (status, body["error"]["code"]) == (404, "gpu_not_found")
    status, body = await get(f"{api}/api/v2/nothing")
    assert (status, body["error"]["code"]) == (404, "not_found")
    async with aiohttp.ClientSession() as s, s.post(f"{api}/api/v1/gpus") as r:
        assert r.status == 405
        assert (await r.json())["error"]["code"] == "method_not_allowed"


async def test_openapi_health_and_metrics(api: str) -> None:
    status, doc = await get(f"{api}/openapi.json")
    assert status == 200
    op = doc["paths"]["/api/v1/gpus/{uuid}/telemetry"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert set(params) == {"uuid", "metric", "start_time", "end_time", "limit", "cursor"}
    assert "date-time" in str(params["start_time"]["schema"])
    assert params["limit"]["schema"]["maximum"] == 10_000
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"]
    assert "TelemetryPoint" in doc["components"]["schemas"]
    assert (await get(f"{api}/healthz")) == (200, {"status": "ok"})
    async with aiohttp.ClientSession() as s, s.get(f"{api}/metrics") as r:
        text = await r.text()
    assert 'ferry_api_requests_total{method="GET",route="/openapi.json",status="200"} 1.0' in text
