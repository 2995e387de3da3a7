"""Groups with header filters on a real broker process, on both engines."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from broker_api import Api
from fixtures.broker_process import BrokerProcess
from fixtures.brokers import acked, both_engines

from ferry.broker.client import BrokerClient
from ferry.broker.models import GroupSettings, HeaderFilter, OutgoingMessage

pytestmark = [pytest.mark.functional, both_engines]

EU_ORDERS = {"filter": {"match": {"type": "order"}, "prefix": {"region": "eu-"}}}


def msg(n: int, **headers: str) -> dict[str, Any]:
    return {"body": n, "headers": headers}


MIX = [  # (message, matches EU_ORDERS)
    (msg(0, type="order", region="eu-west"), True),
    (msg(1, type="refund", region="eu-west"), False),
    (msg(2, type="order", region="us-east"), False),
    (msg(3, type="order"), False),
    (msg(4), False),
    (msg(5, type="order", region="eu-", extra="x"), True),
]


async def drain(api: Api, group: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while got := await api.receive("jobs", group, max=3):
        out += got
        assert await api.settle("ack", "jobs", group, [m["receipt"] for m in got]) \
            == ["ok"] * len(got)
    return out


async def group(api: Api, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = await api.ok("GET", f"/v1/queues/jobs/groups/{name}")
    return doc


async def test_a_filtered_group_gets_only_the_matching_messages(api: Api) -> None:
    await api.create("jobs", "all")
    await api.ok("PUT", "/v1/queues/jobs/groups/eu", EU_ORDERS)
    ids = await api.publish("jobs", *[m for m, _ in MIX])
    want = [i for i, (_, ok) in zip(ids, MIX, strict=True) if ok]
    eu = await group(api, "eu")
    # Skipped at publish: never ready, in flight or lag for the group, only counted.
    assert (eu["lag"], eu["depth"], eu["filtered_total"]) == (2, 2, 4)
    assert eu["settings"]["filter"] == EU_ORDERS["filter"]
    assert (await group(api, "all"))["lag"] == len(MIX)
    got = await drain(api, "eu")
    assert [m["id"] for m in got] == want
    assert [m["headers"]["region"] for m in got] == ["eu-west", "eu-"]
    assert (await group(api, "eu"))["lag"] == 0
    assert len(await drain(api, "all")) == len(MIX)
    assert (await api.ok("GET", "/v1/queues/jobs"))["messages"] == 0  # settled everywhere
    _, metrics = await api.call("GET", "/metrics")
    assert 'ferry_messages_filtered_total{group="eu",queue="jobs"} 4.0' in metrics
    # A message no group wants is gone at once.
    await api.ok("DELETE", "/v1/queues/jobs/groups/all")
    await api.publish("jobs", msg(9, type="refund"))
    assert (await api.ok("GET", "/v1/queues/jobs"))["messages"] == 0


async def test_filters_and_what_they_skipped_survive_a_restart(
        broker: BrokerProcess, api: Api) -> None:
    await api.create("jobs")
    # Published before the group: checked when the group reaches them (earliest start).
    old = await api.publish("jobs", *[m for m, _ in MIX])
    await api.ok("PUT", "/v1/queues/jobs/groups/eu", EU_ORDERS)
    assert (await group(api, "eu"))["lag"] == len(MIX)  # not checked yet
    got = await drain(api, "eu")
    assert [m["id"] for m in got] == [old[0], old[5]]
    assert (await group(api, "eu"))["filtered_total"] == 4
    new = await api.publish("jobs", *[m for m, _ in MIX])  # checked at publish
    assert (await group(api, "eu"))["lag"] == 2

    broker.restart()
    async with Api.connect(broker.url) as api:
        eu = await group(api, "eu")
        assert eu["settings"]["filter"] == EU_ORDERS["filter"]
        assert eu["lag"] == 2  # the skipped ones stay settled
        got = await drain(api, "eu")
        assert [m["id"] for m in got] == [new[0], new[5]]
        later = await api.publish("jobs", *[m for m, _ in MIX])
        assert [m["id"] for m in await drain(api, "eu")] == [later[0], later[5]]
        # The filter changes with the group's settings, for what is not settled yet.
        await api.ok("PUT", "/v1/queues/jobs/groups/eu",
                     {"filter": {"match": {"type": "refund"}}})
        refunds = await api.publish("jobs", *[m for m, _ in MIX])
        assert [m["id"] for m in await drain(api, "eu")] == [refunds[1]]


@pytest.mark.parametrize("bad", [
    {},
    {"match": {}},
    {"match": {"": "x"}},
    {"match": {"type": 1}},
    {"prefix": {"region": "x" * 1025}},
    {"match": {f"h{i}": "v" for i in range(17)}},
    {"match": {}, "prefix": {}},
    {"match": {"type": "order"}, "regex": {"type": ".*"}},
    ["type", "order"],
])
async def test_a_bad_filter_is_a_400(api: Api, bad: Any) -> None:
    await api.create("jobs")
    await api.refused("PUT", "/v1/queues/jobs/groups/eu", {"filter": bad})
    status, _ = await api.call("GET", "/v1/queues/jobs/groups/eu")
    assert status == 404


@pytest.mark.parametrize("mode", ["stream", "sse"])
async def test_pushed_deliveries_skip_what_the_filter_does_not_match(
        broker: BrokerProcess, mode: Literal["stream", "sse"]) -> None:
    """WebSocket and SSE consumers through the Python client, with messages stored before
    the group (checked at delivery) and after it (checked at publish)."""
    async with BrokerClient(broker.url) as client:
        await client.put_queue("jobs")
        before = [OutgoingMessage(body=m["body"], headers=m["headers"]) for m, _ in MIX] * 20
        old = await client.publish("jobs", before)
        await client.put_group("jobs", "eu", GroupSettings(filter=HeaderFilter(
            match={"type": "order"}, prefix={"region": "eu-"})))
        new = await client.publish("jobs", before[:len(MIX)])
        want = [i for i, (_, ok) in zip(old + new, MIX * 21, strict=True) if ok]
        async with client.consumer("jobs", "eu", "c", mode=mode, max_in_flight=3) as c:
            got = await acked(c, len(want))
        assert all(d.headers["type"] == "order" and d.headers["region"].startswith("eu-")
                   for d in got)
        assert sorted(d.id for d in got) == sorted(want)
        stats = await client.group_stats("jobs", "eu")
        assert (stats.lag, stats.filtered_total) == (0, 4 * 21)


async def test_a_receive_whose_leases_were_all_skipped_looks_further(
        api: Api) -> None:
    await api.create("jobs")
    ids = await api.publish("jobs", *[msg(i, type="refund") for i in range(3)],
                            msg(3, type="order"))
    await api.ok("PUT", "/v1/queues/jobs/groups/orders",
                  {"filter": {"match": {"type": "order"}}})
    # The first three leases are all skipped at delivery: the answer is the fourth,
    # not an empty one while a match is ready.
    assert [m["id"] for m in await api.receive("jobs", "orders", max=3)] == [ids[3]]
