"""Fair delivery and retention on both engines, across a restart (the store keeps both)."""

from __future__ import annotations

import pytest
from broker_api import Api
from fixtures.broker_process import BrokerProcess
from fixtures.brokers import both_engines
from testsupport.waiting import eventually_async

pytestmark = [pytest.mark.functional, both_engines]


async def keys_of(api: Api, n: int) -> list[str]:
    """The keys of the next n deliveries, received one at a time and acked."""
    keys = []
    for _ in range(n):
        (m,) = await api.receive("jobs", "w", max=1)
        await api.settle("ack", "jobs", "w", [m["receipt"]])
        keys.append(m["key"])
    return keys


async def test_fair_mode_takes_keys_in_turn_before_and_after_a_restart(
    broker: BrokerProcess, api: Api,
) -> None:
    await api.ok("PUT", "/v1/queues/jobs", {"fair": True})
    await api.ok("PUT", "/v1/queues/jobs/groups/w")
    await api.publish("jobs", *[{"body": i, "key": "noisy"} for i in range(6)])
    await api.publish("jobs", {"body": "b", "key": "b"}, {"body": "c", "key": "c"})
    # One noisy key does not starve the others: each key in turn.
    assert await keys_of(api, 3) == ["noisy", "b", "c"]
    await api.publish("jobs", {"body": "d", "key": "d"}, {"body": "e", "key": "e"})

    broker.restart()
    async with Api.connect(broker.url) as api:
        got = await keys_of(api, 4)
        assert sorted(got[:3]) == ["d", "e", "noisy"], got  # still in turn after the restart
        assert got[3:] + await keys_of(api, 3) == ["noisy"] * 4
        assert await api.receive("jobs", "w") == []


async def test_retention_drops_old_messages_for_good(broker: BrokerProcess, api: Api) -> None:
    await api.ok("PUT", "/v1/queues/jobs", {"retention_ms": 300})
    for group in ("w", "x"):
        await api.ok("PUT", f"/v1/queues/jobs/groups/{group}")
    await api.publish("jobs", *[{"body": i, "key": f"k{i}"} for i in range(5)])
    (leased,) = await api.receive("jobs", "w", max=1)

    async def dropped() -> bool:
        doc = await api.ok("GET", "/v1/queues/jobs")
        return doc["messages"] == 0 and all(g["lag"] == 0 for g in doc["groups"])

    await eventually_async(dropped, "retention to drop the messages")
    # The lease of a message retention dropped settles nothing.
    assert await api.settle("ack", "jobs", "w", [leased["receipt"]]) != ["ok"]
    assert await api.receive("jobs", "x", max=10) == []
    await api.ok("PUT", "/v1/queues/jobs", {"retention_ms": 3_600_000})
    (kept,) = await api.publish("jobs", {"body": "new"})

    broker.restart()
    async with Api.connect(broker.url) as api:
        doc = await api.ok("GET", "/v1/queues/jobs")
        assert doc["messages"] == 1 and doc["published_total"] == 6
        for group in ("w", "x"):
            assert [m["id"] for m in await api.receive("jobs", group, max=10)] == [kept]
