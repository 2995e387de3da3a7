"""The broker's HTTP API, end to end against a real `ferry-broker` process."""

from __future__ import annotations

import asyncio
import io

import pytest
from broker_api import Api
from fixtures.brokers import both_engines

pytestmark = [pytest.mark.functional, both_engines]


async def test_queue_lifecycle(api: Api) -> None:
    status, doc = await api.call("PUT", "/v1/queues/jobs", {"max_deliveries": 3})
    assert status == 201 and doc["settings"]["max_deliveries"] == 3
    status, doc = await api.call("PUT", "/v1/queues/jobs", {"max_deliveries": 4, "fair": True})
    assert status == 200 and doc["settings"]["max_deliveries"] == 4 and doc["settings"]["fair"]
    status, _ = await api.call("PUT", "/v1/queues/other", None)
    assert status == 201
    listed = await api.ok("GET", "/v1/queues")
    assert [q["queue"] for q in listed["queues"]] == ["jobs", "other"]
    status, _ = await api.call("DELETE", "/v1/queues/other")
    assert status == 204
    await api.refused("GET", "/v1/queues/other", status=404, code="queue_not_found")
    status, doc = await api.call("DELETE", "/v1/queues/other")
    assert status == 404


async def test_group_lifecycle(api: Api) -> None:
    await api.ok("PUT", "/v1/queues/jobs")
    status, doc = await api.call(
        "PUT", "/v1/queues/jobs/groups/workers",
        {"visibility_timeout_ms": 5000, "nack_backoff": {"initial_ms": 10}},
    )
    assert status == 201 and doc["settings"]["visibility_timeout_ms"] == 5000
    doc = await api.ok("GET", "/v1/queues/jobs")
    assert [g["group"] for g in doc["groups"]] == ["workers"]
    status, _ = await api.call("DELETE", "/v1/queues/jobs/groups/workers")
    assert status == 204
    await api.refused("GET", "/v1/queues/jobs/groups/workers", status=404, code="group_not_found")


async def test_publish_receive_ack_and_stats(api: Api) -> None:
    await api.create("jobs", "w")
    ids = await api.publish(
        "jobs",
        {"body": {"n": 1}, "key": "gpu-1", "headers": {"trace": "t1"}},
        {"body": [1, 2, 3], "priority": 7},
        {"body": "later", "delay_ms": 600_000},
    )
    assert len(set(ids)) == 3
    stats = await api.ok("GET", "/v1/queues/jobs/groups/w")
    assert (stats["depth"], stats["delayed"], stats["lag"]) == (2, 1, 3)
    got = await api.receive("jobs", "w", consumer="alice", max=10)
    assert [m["id"] for m in got] == [ids[1], ids[0]]  # priority 7 first
    assert got[1]["body"] == {"n": 1} and got[1]["key"] == "gpu-1"
    assert got[1]["headers"] == {"trace": "t1"} and got[1]["delivery_count"] == 1
    stats = await api.ok("GET", "/v1/queues/jobs/groups/w")
    assert (stats["depth"], stats["in_flight"]) == (0, 2)
    assert stats["consumers"][0]["name"] == "alice"
    assert stats["consumers"][0]["in_flight"] == 2
    assert await api.settle("ack", "jobs", "w", [m["receipt"] for m in got]) == ["ok", "ok"]
    stats = await api.ok("GET", "/v1/queues/jobs/groups/w")
    assert (stats["in_flight"], stats["acked_total"], stats["lag"]) == (0, 2, 1)
    q = await api.ok("GET", "/v1/queues/jobs")
    assert (q["published_total"], q["messages"]) == (3, 1)


async def test_fan_out_and_competing_consumers(api: Api) -> None:
    await api.ok("PUT", "/v1/queues/jobs")
    for g in ("billing", "audit"):
        await api.ok("PUT", f"/v1/queues/jobs/groups/{g}")
    ids = await api.publish("jobs", *[{"body": i} for i in range(6)])
    a = await api.receive("jobs", "billing", consumer="a", max=3)
    b = await api.receive("jobs", "billing", consumer="b", max=10)
    assert {m["id"] for m in a} | {m["id"] for m in b} == set(ids)
    assert not {m["id"] for m in a} & {m["id"] for m in b}
    audit = await api.receive("jobs", "audit", max=10)
    assert [m["id"] for m in audit] == ids


async def test_long_poll_is_woken_by_a_publish(api: Api) -> None:
    await api.create("jobs", "w")
    waiting = asyncio.create_task(api.receive("jobs", "w", consumer="sleeper", wait_ms=30_000))
    await api.seen("jobs", "w", "sleeper")
    assert not waiting.done()
    (mid,) = await api.publish("jobs", {"body": "wake"})
    got = await waiting
    assert [m["id"] for m in got] == [mid]


async def test_long_poll_returns_empty_after_wait(api: Api) -> None:
    await api.create("jobs", "w")
    assert await api.receive("jobs", "w", wait_ms=100) == []


async def test_expired_lease_redelivers_to_another_consumer(api: Api) -> None:
    await api.ok("PUT", "/v1/queues/jobs")
    await api.ok("PUT", "/v1/queues/jobs/groups/w", {"visibility_timeout_ms": 300})
    (mid,) = await api.publish("jobs", {"body": "slow"})
    (first,) = await api.receive("jobs", "w", consumer="slow")
    (second,) = await api.receive("jobs", "w", consumer="fast", wait_ms=30_000)
    assert second["id"] == mid and second["delivery_count"] == 2
    assert await api.settle("ack", "jobs", "w", [first["receipt"]]) == ["stale"]
    assert await api.settle("extend", "jobs", "w", [first["receipt"]],
                            visibility_timeout_ms=1000) == ["stale"]
    assert await api.settle("ack", "jobs", "w", [second["receipt"], "bogus"]) == ["ok", "unknown"]


async def test_extend_keeps_a_slow_consumers_lease(api: Api) -> None:
    await api.ok("PUT", "/v1/queues/jobs")
    await api.ok("PUT", "/v1/queues/jobs/groups/w", {"visibility_timeout_ms": 60_000})
    await api.publish("jobs", {"body": 1})
    (m,) = await api.receive("jobs", "w", visibility_timeout_ms=2000)
    assert await api.settle("extend", "jobs", "w", [m["receipt"]],
                            visibility_timeout_ms=60_000) == ["ok"]
    # Past the first lease's end: without the extension it would be redelivered here.
    assert await api.receive("jobs", "w", consumer="other", wait_ms=3000) == []
    assert await api.settle("ack", "jobs", "w", [m["receipt"]]) == ["ok"]


async def test_nack_backoff_and_max_deliveries_to_dlq_and_redrive(api: Api) -> None:
    await api.ok("PUT", "/v1/queues/jobs", {"max_deliveries": 2})
    await api.ok("PUT", "/v1/queues/jobs/groups/w", {"nack_backoff": {"initial_ms": 50}})
    ids = await api.publish("jobs", {"body": "poison-1"}, {"body": "poison-2"}, {"body": "ok"})
    for _ in range(2):
        got = await api.receive("jobs", "w", max=10, wait_ms=30_000)
        assert [m["id"] for m in got][:1] == [ids[0]]
        poison = [m["receipt"] for m in got if m["body"].startswith("poison")]
        good = [m["receipt"] for m in got if m["body"] == "ok"]
        await api.settle("nack", "jobs", "w", poison)
        if good:
            await api.settle("ack", "jobs", "w", good)
        if len(poison) < 2:  # wait out the backoff of the one that came back first
            await api.receive("jobs", "w", wait_ms=10)
    stats = await api.ok("GET", "/v1/queues/jobs/groups/w")
    assert stats["dead"] == 2 and stats["depth"] == 0
    page = await api.ok("GET", "/v1/queues/jobs/groups/w/dead?limit=1")
    assert [m["id"] for m in page["messages"]] == [ids[0]]
    assert page["messages"][0]["delivery_count"] == 2 and page["messages"][0]["body"] == "poison-1"
    cursor = page["next_cursor"]
    page2 = await api.ok("GET", f"/v1/queues/jobs/groups/w/dead?limit=1&cursor={cursor}")
    assert [m["id"] for m in page2["messages"]] == [ids[1]] and page2["next_cursor"] is None
    doc = await api.ok("POST", "/v1/queues/jobs/groups/w/dead/redrive", {"ids": [ids[1]]})
    assert doc == {"redriven": 1}
    (again,) = await api.receive("jobs", "w", wait_ms=30_000)
    assert again["id"] == ids[1] and again["delivery_count"] == 1
    doc = await api.ok("POST", "/v1/queues/jobs/groups/w/dead/redrive", {})
    assert doc == {"redriven": 1}
    assert (await api.ok("GET", "/v1/queues/jobs/groups/w"))["dead"] == 0


async def test_message_inspection(api: Api) -> None:
    await api.create("jobs", "a", "b")
    (mid,) = await api.publish("jobs", {"body": {"x": 1}, "key": "k", "priority": 3})
    (m,) = await api.receive("jobs", "a")
    info = await api.ok("GET", f"/v1/queues/jobs/messages/{mid}")
    assert info["body"] == {"x": 1} and info["key"] == "k" and info["priority"] == 3
    states = {g["group"]: (g["state"], g["delivery_count"]) for g in info["groups"]}
    assert states == {"a": ("in_flight", 1), "b": ("ready", 0)}
    await api.settle("ack", "jobs", "a", [m["receipt"]])
    info = await api.ok("GET", f"/v1/queues/jobs/messages/{mid}")
    assert {g["group"]: g["state"] for g in info["groups"]} == {"a": "acked", "b": "ready"}
    for bad in ("12345", "nope"):
        await api.refused("GET", f"/v1/queues/jobs/messages/{bad}", status=404,
                          code="message_not_found")


async def test_dedup_id_returns_the_original_id(api: Api) -> None:
    await api.ok("PUT", "/v1/queues/jobs")
    first = await api.publish("jobs", {"body": 1, "dedup_id": "order-7"})
    again = await api.publish("jobs", {"body": 1, "dedup_id": "order-7"}, {"body": 2})
    assert again[0] == first[0] and again[1] != first[0]
    assert (await api.ok("GET", "/v1/queues/jobs"))["published_total"] == 2


async def test_start_at_latest(api: Api) -> None:
    await api.ok("PUT", "/v1/queues/jobs")
    await api.publish("jobs", {"body": "old"})
    await api.ok("PUT", "/v1/queues/jobs/groups/new", {"start_at": "latest"})
    (mid,) = await api.publish("jobs", {"body": "new"})
    assert [m["id"] for m in await api.receive("jobs", "new")] == [mid]


BAD_INPUTS = [
    ("PUT", "/v1/queues/Bad_Name", b"{}", 400, "invalid_name"),
    ("PUT", "/v1/queues/" + "a" * 64, b"{}", 400, "invalid_name"),
    ("PUT", "/v1/queues/jobs", b"{not json", 400, "bad_request"),
    ("PUT", "/v1/queues/jobs", b'{"max_deliveries": -1}', 400, "bad_request"),
    ("PUT", "/v1/queues/jobs", b'{"retention_ms": 0}', 400, "bad_request"),
    ("PUT", "/v1/queues/jobs", b'{"unknown_field": 1}', 400, "bad_request"),
    ("PUT", "/v1/queues/jobs", b"[]", 400, "bad_request"),
    ("PUT", "/v1/queues/jobs/groups/w", b'{"start_at": "middle"}', 400, "bad_request"),
    ("POST", "/v1/queues/nope/messages", b'{"messages":[{"body":1}]}', 404, "queue_not_found"),
    ("POST", "/v1/queues/jobs/messages", b'{"messages":[]}', 400, "bad_request"),
    ("POST", "/v1/queues/jobs/messages", b'{"messages":[{"body":1,"priority":10}]}', 400,
     "bad_request"),
    ("POST", "/v1/queues/jobs/messages", b'{"messages":[{"body":1,"delay_ms":-5}]}', 400,
     "bad_request"),
    ("POST", "/v1/queues/jobs/messages", b'{"messages":[{"body":1,"colour":"red"}]}', 400,
     "bad_request"),
    ("POST", "/v1/queues/jobs/messages", b'{"messages":[{"bod', 400, "bad_request"),
    ("POST", "/v1/queues/jobs/messages", b"", 400, "bad_request"),
    ("POST", "/v1/queues/jobs/groups/nope/receive", b'{"consumer":"c"}', 404, "group_not_found"),
    ("POST", "/v1/queues/jobs/groups/w/receive", b'{"consumer":"c","max":0}', 400, "bad_request"),
    ("POST", "/v1/queues/jobs/groups/w/receive", b'{"consumer":"c","wait_ms":-1}', 400,
     "bad_request"),
    ("POST", "/v1/queues/jobs/groups/w/receive", b'{"consumer":"bad consumer"}', 400,
     "bad_request"),
    ("POST", "/v1/queues/jobs/groups/w/ack", b'{"receipts":[]}', 400, "bad_request"),
    ("POST", "/v1/queues/jobs/groups/w/extend", b'{"receipts":["x"]}', 400, "bad_request"),
    ("POST", "/v1/queues/jobs/groups/w/nack", b'{"receipts":["x"],"delay_ms":-1}', 400,
     "bad_request"),
    ("GET", "/v1/queues/jobs/groups/w/dead?limit=-1", None, 400, "bad_request"),
    ("GET", "/v1/queues/jobs/groups/w/dead?cursor=zz", None, 400, "bad_request"),
    ("POST", "/v1/queues/jobs/groups/w/dead/redrive", b'{"ids": "all"}', 400, "bad_request"),
    ("GET", "/v1/nothing-here", None, 404, "bad_request"),
]


async def test_bad_inputs_get_4xx_and_the_broker_keeps_serving(api: Api) -> None:
    await api.ok("PUT", "/v1/queues/jobs", {"max_message_bytes": 100})
    await api.ok("PUT", "/v1/queues/jobs/groups/w")
    for method, path, data, status, code in BAD_INPUTS:
        doc = await api.refused(method, path, data=data, status=status, code=code)
        assert doc["error"]["message"]
    await api.refused("POST", "/v1/queues/jobs/messages", {"messages": [{"body": "x" * 200}]},
                      413, "message_too_large")
    # Nothing of the above changed anything: the queue still works.
    q = await api.ok("GET", "/v1/queues/jobs")
    assert q["published_total"] == 0 and q["settings"]["max_message_bytes"] == 100
    (mid,) = await api.publish("jobs", {"body": "fine"})
    assert [m["id"] for m in await api.receive("jobs", "w")] == [mid]


async def test_oversized_request_is_refused(api: Api) -> None:
    await api.ok("PUT", "/v1/queues/jobs")
    huge = b'{"messages":[{"body":"' + b"x" * (65 * 1024 * 1024) + b'"}]}'
    await api.refused("POST", "/v1/queues/jobs/messages", data=io.BytesIO(huge), status=413,
                      code="payload_too_large")
    assert await api.publish("jobs", {"body": 1})
