"""WebSocket frames fuzzed with Hypothesis against a real broker process.

Frames are drawn from the wire models' own fields (every model of WsRequest), then
damaged: a field dropped, one added, any value swapped for any JSON (huge integers,
floats, nesting), or not JSON at all. Each example sends
its frames on one connection together with a valid publish, and requires that
every frame is answered, the valid publish is durable, no reply is a broker
failure, and the connection is still open afterwards; the broker then restarts
cleanly on the fuzzed data directory.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import orjson
import pytest
from broker_api import Api
from fixtures.broker_process import BrokerProcess
from fixtures.brokers import both_engines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry.broker.models import (
    WsBrowse,
    WsCancel,
    WsFrame,
    WsPublish,
    WsPurge,
    WsSettle,
    WsSubscribe,
    WsUnsubscribe,
)
from ferry.kit.tracing import TRACEPARENT_PATTERN

pytestmark = [pytest.mark.fuzz, both_engines]

EXAMPLES = int(os.environ.get("FERRY_FUZZ_WS_EXAMPLES", "50"))
QUEUE, GROUP = "fz", "g"
FIRST_SEQ = 1_000_000  # the test's own seqs; drawn frames keep theirs below it or wild
REPLY_TIMEOUT_S = 60.0  # a liveness bound, not a timing assertion

huge = st.integers(min_value=2**63 - 2, max_value=2**70) | st.integers(max_value=-(2**63))
json_leaf = (st.none() | st.booleans() | st.integers() | huge
             | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_any = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
bad_names = st.sampled_from(["nope", "", "Bad Name", "a" * 64, "fz\n", GROUP])
queues, groups = st.just(QUEUE) | bad_names, st.just(GROUP) | bad_names
millis = huge | st.integers(min_value=-1, max_value=10**6) | st.integers(2**40, 2**62)

message = st.fixed_dictionaries({"body": json_any}, optional={
    "delay_ms": millis, "key": st.text(max_size=5), "priority": st.integers(-1, 10),
    "dedup_id": st.text(max_size=5), "headers": st.dictionaries(st.text(max_size=4),
                                                                st.text(max_size=4), max_size=2),
})
FIELDS: dict[type[Any], dict[str, st.SearchStrategy[Any]]] = {
    WsPublish: {"queue": queues, "messages": st.lists(message, min_size=1, max_size=3),
                "traceparent": st.from_regex(TRACEPARENT_PATTERN, fullmatch=True)
                | st.text(max_size=60)},
    WsSubscribe: {"queue": queues, "group": groups, "consumer": st.text(max_size=6),
                  "max_in_flight": st.integers(-1, 3) | huge,
                  "visibility_timeout_ms": millis},
    WsSettle: {"queue": queues, "group": groups,
               "receipts": st.lists(st.text(max_size=12), max_size=3),
               "delay_ms": millis, "visibility_timeout_ms": millis},
    WsUnsubscribe: {"sub": st.integers(0, 1000) | huge},
    WsBrowse: {"queue": queues, "limit": st.integers(-1, 1001) | huge,
               "cursor": st.text(max_size=4) | st.integers(0, 30).map(str),
               "group": groups, "state": st.sampled_from(["ready", "in_flight", "lost"]),
               "key": st.text(max_size=5), "priority": st.integers(-1, 10)},
    WsCancel: {"queue": queues, "id": st.text(max_size=4) | st.integers(0, 2**60).map(str)},
    WsPurge: {"queue": queues, "group": groups},
}
# Every request model has a generator for every field: a new model or field fails here first.
assert set(FIELDS) == set(WsFrame.__args__)
for model, fields in FIELDS.items():
    assert set(fields) | {"op", "seq"} == set(model.model_fields), model


@st.composite
def frame(draw: st.DrawFn) -> bytes:
    model = draw(st.sampled_from(list(FIELDS)))
    ops = model.model_fields["op"].annotation.__args__  # the Literal's values
    doc: dict[str, Any] = {"op": draw(st.sampled_from(ops)), "seq": draw(st.integers(0, 1000))}
    for name, strategy in FIELDS[model].items():
        # Required fields always (damage may drop one): whole frames reach the core.
        if model.model_fields[name].is_required() or draw(st.booleans()):
            doc[name] = draw(strategy)
    damage = draw(st.sampled_from(["none"] * 5 + ["drop", "add", "swap", "seq", "raw"]))
    if damage == "drop" and doc:
        doc.pop(draw(st.sampled_from(sorted(doc))))
    elif damage == "add":
        doc[draw(st.text(max_size=6))] = draw(json_any)
    elif damage == "swap":
        doc[draw(st.sampled_from(sorted(doc)))] = draw(json_any)
    elif damage == "seq":
        doc["seq"] = draw(huge | st.floats() | st.text(max_size=3))
    elif damage == "raw":
        return draw(st.binary(max_size=40) | st.text(max_size=40).map(str.encode))
    try:
        return orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError):  # an integer orjson cannot write
        return repr(doc).encode()


async def exchange(url: str, frames: list[bytes]) -> None:
    """Send the frames and a valid publish; everything must be answered on a live connection."""
    async with aiohttp.ClientSession() as s, s.ws_connect(url + "/v1/ws") as ws:
        for raw in frames:
            await ws.send_bytes(raw)
        canary = FIRST_SEQ + len(frames)
        await ws.send_bytes(orjson.dumps({"op": "publish", "seq": canary, "queue": QUEUE,
                                          "messages": [{"body": "canary"}]}))
        replies: list[dict[str, Any]] = []
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            while not any(r.get("seq") == canary for r in replies):
                msg = await ws.receive()
                assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), (
                    f"connection ended ({msg.type}) after frames {frames!r}")
                doc = orjson.loads(msg.data)
                if doc.get("op") == "reply":
                    replies.append(doc)
        (answer,) = [r for r in replies if r.get("seq") == canary]
        assert "ids" in answer, answer
        failures = [r for r in replies
                    if r.get("error", {}).get("code") == "unavailable"]
        assert failures == [], (failures, frames)
        assert not ws.closed


@pytest.fixture
def fuzzed_broker(broker: BrokerProcess) -> BrokerProcess:
    async def setup() -> None:
        async with Api.connect(broker.url) as api:
            await api.create(QUEUE, GROUP)

    asyncio.run(setup())
    return broker


def test_bad_frames_get_error_replies_and_the_connection_survives(
    fuzzed_broker: BrokerProcess,
) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(frames=st.lists(frame(), min_size=1, max_size=12))
    def one_connection(frames: list[bytes]) -> None:
        asyncio.run(exchange(fuzzed_broker.url, frames))

    one_connection()
    assert fuzzed_broker.stop(timeout=60) == 0, fuzzed_broker.logs()[-3000:]
    fuzzed_broker.start()

    async def check() -> None:
        async with Api.connect(fuzzed_broker.url) as api:
            assert (await api.call("GET", "/readyz"))[0] == 200
            stats = await api.ok("GET", f"/v1/queues/{QUEUE}")
            assert stats["published_total"] >= 1

    asyncio.run(check())
