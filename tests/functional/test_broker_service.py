"""Service surface: bearer tokens, /metrics, /openapi.json, health checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from broker_api import Api
from fixtures.broker_process import BrokerProcess
from fixtures.brokers import GUARDED_TOKEN

from ferry.broker import models

pytestmark = pytest.mark.functional


async def test_token_file_guards_every_route_but_health(
    tmp_path: Path, broker_factory: Callable[..., BrokerProcess]
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# operators\nsecret-1\n\nsecret-2\n")
    b = broker_factory("--token-file", str(tokens))
    async with Api.connect(b.url) as api:
        for path in ("/healthz", "/readyz"):
            assert (await api.call("GET", path))[0] == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "secret-1"}):
            for method, path in (("GET", "/v1/queues"), ("PUT", "/v1/queues/jobs"),
                                 ("GET", "/metrics"), ("GET", "/v1/ws")):
                await api.refused(method, path, status=401, code="unauthorized", headers=headers)
        for token in ("secret-1", "secret-2"):
            status, _ = await api.call("PUT", "/v1/queues/jobs", {},
                                       headers={"Authorization": f"Bearer {token}"})
            assert status in (200, 201)


def test_token_file_must_exist_and_hold_a_token(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n# nothing\n")
    for path in (empty, tmp_path / "missing"):
        b = BrokerProcess(tmp_path / "d", tmp_path / "log", "--token-file", str(path))
        with pytest.raises(RuntimeError, match="token-file"):
            b.start()


async def test_metrics_report_queues_groups_and_requests(api: Api) -> None:
    await api.create("jobs", "w")
    await api.publish("jobs", *[{"body": i} for i in range(3)])
    got = await api.receive("jobs", "w", max=1)
    await api.settle("ack", "jobs", "w", [got[0]["receipt"]])
    await api.call("GET", "/v1/queues/nope")
    status, text = await api.call("GET", "/metrics")
    assert status == 200
    lines = set(text.splitlines())
    for expected in (
        'ferry_messages_published_total{queue="jobs"} 3.0',
        'ferry_queue_messages{queue="jobs"} 2.0',
        'ferry_messages_acked_total{group="w",queue="jobs"} 1.0',
        'ferry_group_depth{group="w",queue="jobs"} 2.0',
        'ferry_group_lag{group="w",queue="jobs"} 2.0',
        'ferry_http_requests_total{method="GET",route="/v1/queues/{queue}",status="404"} 1.0',
    ):
        assert expected in lines, expected
    # Every commit is timed: the histogram counts exactly the commits made so far.
    value = {line.split(" ")[0]: float(line.split(" ")[1]) for line in lines
             if line.startswith("ferry_store_commit")}
    commits = value["ferry_store_commits_total"]
    assert value["ferry_store_commit_seconds_count"] == commits >= 3
    assert value['ferry_store_commit_seconds_bucket{le="+Inf"}'] == commits
    assert 0 < value["ferry_store_commit_seconds_sum"] < commits  # each well under a second


async def test_openapi_is_generated_from_the_wire_models(broker: BrokerProcess) -> None:
    async with aiohttp.ClientSession() as s:
        doc: dict[str, Any] = await Api(s, broker.url).ok("GET", "/openapi.json")
    assert doc["openapi"].startswith("3.")
    schemas = doc["components"]["schemas"]
    own = models.PublishRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    assert schemas["PublishRequest"]["properties"] == own["properties"]
    for name in ("QueueSettings", "GroupStats", "Delivery", "ErrorBody", "WsPublish"):
        assert name in schemas
    publish = doc["paths"]["/v1/queues/{queue}/messages"]["post"]
    assert publish["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PublishRequest"
    }
    assert set(schemas["OutgoingMessage"]["properties"]) == set(
        models.OutgoingMessage.model_fields
    )
    assert schemas["QueueSettings"]["additionalProperties"] is False
    assert "/v1/queues/{queue}/groups/{group}/stream" in doc["paths"]



async def test_openapi_documents_what_the_routes_answer(
    broker: BrokerProcess, guarded_broker: BrokerProcess
) -> None:
    """Schemathesis' checks found these (tests/fuzz): 201, security, 405 Allow, cursor."""
    async with aiohttp.ClientSession() as s:
        doc: dict[str, Any] = await Api(s, broker.url).ok("GET", "/openapi.json")
        api = Api(s, guarded_broker.url)
        auth = {"Authorization": f"Bearer {GUARDED_TOKEN}"}
        _, secured = await api.call("GET", "/openapi.json", headers=auth)
        async with s.request("TRACE", guarded_broker.url + "/v1/queues", headers=auth) as r:
            assert r.status == 405 and "GET" in r.headers["Allow"]
        await api.call("PUT", "/v1/queues/q", {}, headers=auth)
        await api.call("PUT", "/v1/queues/q/groups/g", {}, headers=auth)
        await api.refused("GET", "/v1/queues/q/groups/g/dead?cursor=", headers=auth)
    for path in ("/v1/queues/{queue}", "/v1/queues/{queue}/groups/{group}"):
        assert {"200", "201"} <= set(doc["paths"][path]["put"]["responses"])
    assert "security" not in doc  # no --token-file: nothing to authenticate
    assert secured["security"] == [{"bearer": []}]
    assert secured["paths"]["/healthz"]["get"]["security"] == []
    dead = doc["paths"]["/v1/queues/{queue}/groups/{group}/dead"]["get"]["parameters"]
    assert {p["name"] for p in dead} == {"queue", "group", "limit", "cursor"}
