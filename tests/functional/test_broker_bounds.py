"""Every number a request carries has a bound, and types are strict (issue 21).

Against a real `ferry-broker`: what the models refuse never reaches the store,
so the broker keeps answering and restarts on its data directory.
"""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
from typing import Any

import aiohttp
import orjson
import pytest
from broker_api import Api
from fixtures.broker_process import BrokerProcess
from fixtures.brokers import both_engines

from ferry.broker import models as m
from ferry.broker.bounds import limits

pytestmark = pytest.mark.functional

HUGE = 18_446_744_073_709_551_616  # 2**64: read back as a float by orjson
NEAR_INT64 = 2**63 - 1000

QUEUE_FIELDS = ("retention_ms", "visibility_timeout_ms", "dedup_window_ms", "max_message_bytes",
                "max_deliveries")


def largest(model: type[m.Model]) -> dict[str, Any]:
    """Every bounded number of a settings model at its upper bound."""
    return {name: b["maximum"] for name, b in limits(model).items() if "maximum" in b}


async def test_too_large_settings_are_refused_and_the_broker_still_restarts(
    broker: BrokerProcess, api: Api,
) -> None:
    await api.ok("PUT", "/v1/queues/q")
    for field in QUEUE_FIELDS:
        await api.refused("PUT", "/v1/queues/q", {field: HUGE})
    for body in ({"visibility_timeout_ms": HUGE}, {"nack_backoff": {"initial_ms": HUGE}},
                 {"nack_backoff": {"max_ms": HUGE}}):
        status, doc = await api.call("PUT", "/v1/queues/q/groups/g", body)
        assert status == 400, (body, doc)
    await api.ok("GET", "/v1/queues")
    broker.restart()
    async with aiohttp.ClientSession() as s:
        doc = await Api(s, broker.url).ok("GET", "/v1/queues/q")
        assert doc["settings"] == m.QueueSettings().model_dump(mode="json")


async def test_the_largest_allowed_settings_load_back_after_a_restart(
    broker: BrokerProcess,
) -> None:
    queue = largest(m.QueueSettings)
    assert set(QUEUE_FIELDS) <= set(queue)
    group = {**largest(m.GroupSettings), "nack_backoff": largest(m.Backoff)}
    assert {"visibility_timeout_ms", "max_deliveries"} <= set(group)
    async with Api.connect(broker.url) as api:
        await api.ok("PUT", "/v1/queues/q", queue)
        await api.ok("PUT", "/v1/queues/q/groups/g", group)
        before = await api.ok("GET", "/v1/queues/q")
    broker.restart()
    async with aiohttp.ClientSession() as s:
        after = await Api(s, broker.url).ok("GET", "/v1/queues/q")
    assert after["settings"] == before["settings"] == {**before["settings"], **queue}
    assert after["groups"][0]["settings"] == before["groups"][0]["settings"]
    assert after["groups"][0]["settings"]["nack_backoff"] == group["nack_backoff"]


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/queues/q", {"max_deliveries": "5"}),
    ("/v1/queues/q", {"fair": "yes"}),
    ("/v1/queues/q", {"fair": 1}),
    ("/v1/queues/q", {"retention_ms": 1000.5}),
    ("/v1/queues/q/groups/g/receive", {"consumer": "c", "max": "3"}),
    ("/v1/queues/q/messages", {"messages": [{"body": 1, "priority": "1"}]}),
    ("/v1/queues/q/messages", {"messages": [{"body": 1, "delay_ms": True}]}),
])
async def test_types_are_strict(api: Api, path: str, body: dict[str, Any]) -> None:
    await api.create("q", "g")
    method = "PUT" if path == "/v1/queues/q" else "POST"
    await api.refused(method, path, body)


async def test_a_whole_number_written_with_a_fraction_is_an_integer(
    api: Api,
) -> None:
    """JSON Schema's integer (and so the OpenAPI document's): 1000.0 is 1000.

    Schemathesis' positive-data check sends such numbers (tests/fuzz).
    """
    doc = await api.ok("PUT", "/v1/queues/q", {"retention_ms": 1000.0, "max_deliveries": 3.0})
    assert (doc["settings"]["retention_ms"], doc["settings"]["max_deliveries"]) == (1000, 3)
    (mid,) = await api.publish("q", {"body": 1, "priority": 2.0})
    info = await api.ok("GET", f"/v1/queues/q/messages/{mid}")
    assert info["priority"] == 2 and isinstance(info["priority"], int)


@pytest.mark.parametrize("raw", [
    b'{"messages":[{"body":NaN}]}',
    b'{"messages":[{"body":[1,{"x":Infinity}]}]}',
    b'{"messages":[{"body":-Infinity}]}',
    b'{"messages":[{"body":1e400}]}',
    b'{"messages":[{"body":18446744073709551616}]}',
    b'{"messages":[{"body":{"n":-99999999999999999999999}}]}',
])
async def test_numbers_json_cannot_carry_are_refused_not_stored(
    api: Api, raw: bytes
) -> None:
    await api.ok("PUT", "/v1/queues/q")
    await api.refused("POST", "/v1/queues/q/messages", data=raw,
                      headers={"Content-Type": "application/json"})
    assert (await api.ok("GET", "/v1/queues/q"))["messages"] == 0


async def test_a_delay_near_int64_is_refused_and_fails_no_one_else(
        broker: BrokerProcess, api: Api) -> None:
    """The bad publish is refused before the commit; 20 innocent ones sharing it succeed."""
    await api.create("q", "g")
    bad = api.call("POST", "/v1/queues/q/messages",
                   {"messages": [{"body": "bad", "delay_ms": NEAR_INT64}]})
    good = [api.call("POST", "/v1/queues/q/messages", {"messages": [{"body": i}]})
            for i in range(20)]
    (bad_status, _), *answers = await asyncio.gather(bad, *good)
    assert bad_status == 400
    assert [status for status, _ in answers] == [200] * 20
    got = await api.receive("q", "g", max=100)
    assert sorted(x["body"] for x in got) == list(range(20))
    # A nack's delay has the same bound.
    status, doc = await api.call("POST", "/v1/queues/q/groups/g/nack",
                                 {"receipts": [got[0]["receipt"]], "delay_ms": NEAR_INT64})
    assert status == 400, doc
    async with aiohttp.ClientSession() as s2:
        status, _ = await Api(s2, broker.url).call("GET", "/readyz")
        assert status == 200


async def test_headers_count_towards_max_message_bytes(api: Api) -> None:
    await api.ok("PUT", "/v1/queues/q", {"max_message_bytes": 10})
    await api.refused("POST", "/v1/queues/q/messages", {
        "messages": [{"body": 1, "headers": {"h": "x" * 5000}}],
    }, 413, "message_too_large")
    await api.publish("q", {"body": 1, "headers": {"h": "x"}})  # 1 + 9 bytes: fits


async def test_a_name_with_a_trailing_newline_is_refused_over_http_and_websocket(
    api: Api,
) -> None:
    await api.refused("PUT", "/v1/queues/abc%0A", code="invalid_name")
    assert (await api.ok("GET", "/v1/queues"))["queues"] == []
    await api.ok("PUT", "/v1/queues/abc")
    async with api.session.ws_connect(api.url + "/v1/ws") as ws:
        await ws.send_bytes(orjson.dumps(
            {"op": "publish", "seq": 1, "queue": "abc\n", "messages": [{"body": 1}]}
        ))
        reply = orjson.loads((await ws.receive()).data)
    assert reply["seq"] == 1 and reply["error"]["code"] == "invalid_name", reply


async def test_a_body_that_does_not_decode_is_a_400(broker: BrokerProcess, api: Api) -> None:
    await api.ok("PUT", "/v1/queues/q")
    await api.refused("POST", "/v1/queues/q/messages", data=b"not gzip at all",
                      headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    packed = gzip.compress(orjson.dumps({"messages": [{"body": 1}]}))
    status, doc = await api.call(
        "POST", "/v1/queues/q/messages", data=packed,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert status == 200, doc
    assert "Unhandled exception" not in broker.logs()


async def test_settings_stored_beyond_todays_bounds_load_within_them(
    broker: BrokerProcess, api: Api,
) -> None:
    """A data dir written by an older broker (no bounds): the broker starts, clamps, serves.

    Before the bounds, a dedup window near 2**64 loaded and then made every publish
    carrying a dedup id wait forever for the stored ids (their read failed, unlogged).
    """
    await api.create("q", "g")
    await api.publish("q", {"body": 1, "dedup_id": "first"})
    assert broker.stop() == 0
    conn = sqlite3.connect(broker.data_dir / "ferry.db")
    with conn:
        conn.execute("UPDATE queues SET settings = ?", (
            b'{"retention_ms": 18446744073709551616, "dedup_window_ms": 18446744073709551615,'
            b' "visibility_timeout_ms": NaN, "fair": true}'.decode().replace("NaN", "null"),
        ))
        conn.execute("UPDATE groups SET settings = ?", (
            '{"nack_backoff": {"initial_ms": 18446744073709551616, "multiplier": 1e9}}',
        ))
    conn.close()
    broker.start()
    async with Api.connect(broker.url) as api:
        doc = await api.ok("GET", "/v1/queues/q")
        assert doc["settings"] == {
            **m.QueueSettings().model_dump(mode="json"), "fair": True,
            "retention_ms": m.MAX_DURATION_MS, "dedup_window_ms": m.MAX_DEDUP_WINDOW_MS,
        }
        assert doc["groups"][0]["settings"]["nack_backoff"] == {
            **m.Backoff().model_dump(mode="json"), "initial_ms": m.MAX_DURATION_MS,
            "multiplier": 100.0,
        }
        ids = await asyncio.wait_for(
            api.publish("q", {"body": 2, "dedup_id": "first"}, {"body": 3, "dedup_id": "new"}),
            timeout=60,
        )
        assert len(set(ids)) == 2  # "first" is known: the stored dedup ids were read back
    assert "stored settings out of bounds" in broker.logs()


@both_engines
async def test_a_key_with_nul_is_refused_and_fails_no_one_else(api: Api) -> None:
    """PostgreSQL's text cannot hold U+0000: such a key once failed the shared commit, and the
    broker stopped and started over, failing every request that shared it (found by fuzzing)."""
    await api.create("q", "g")
    bad = api.call("POST", "/v1/queues/q/messages",
                   {"messages": [{"body": "bad", "key": "tenant\u0000a"}]})
    good = [api.call("POST", "/v1/queues/q/messages", {"messages": [{"body": i, "key": "k"}]})
            for i in range(20)]
    (bad_status, bad_doc), *answers = await asyncio.gather(bad, *good)
    assert bad_status == 400, bad_doc
    assert bad_doc["error"]["code"] == "bad_request"
    assert [status for status, _ in answers] == [200] * 20
    got = await api.receive("q", "g", max=100)
    assert sorted(x["body"] for x in got) == list(range(20))


@both_engines
async def test_a_body_of_whitespace_is_not_an_absent_body(api: Api) -> None:
    """Only a request with no body at all takes the defaults; "\\n" is not JSON."""
    for path in ("/v1/queues/q", "/v1/queues/q/groups/g"):
        await api.refused("PUT", path, data=b"\n", headers={"Content-Type": "application/json"})
        await api.ok("PUT", path)  # no body: the defaults
    status, doc = await api.call("POST", "/v1/queues/q/groups/g/dead/redrive", data=b" ",
                                 headers={"Content-Type": "application/json"})
    assert status == 400, doc
    assert [q["queue"] for q in (await api.ok("GET", "/v1/queues"))["queues"]] == ["q"]
