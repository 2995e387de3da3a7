"""Publishing's pure parts: dedup ids are filled once, batches keep order."""

import pytest

from ferry.broker.client import BrokerClient
from ferry.broker.client.batching import batches, wire_messages, with_dedup_ids
from ferry.broker.models import OutgoingMessage

pytestmark = pytest.mark.unit


def test_every_message_gets_a_distinct_dedup_id_and_given_ones_are_kept() -> None:
    given = OutgoingMessage(body=1, dedup_id="mine")
    messages = [OutgoingMessage(body=0), given, *(OutgoingMessage(body=n) for n in range(2, 100))]
    filled = with_dedup_ids(messages)
    ids = [m.dedup_id for m in filled]
    assert None not in ids
    assert len(set(ids)) == len(ids)
    assert filled[1].dedup_id == "mine"
    assert [m.body for m in filled] == [m.body for m in messages]
    assert messages[0].dedup_id is None  # the caller's messages are not changed


def test_filling_is_done_once_so_a_retry_reuses_the_same_ids() -> None:
    filled = with_dedup_ids([OutgoingMessage(body=n) for n in range(10)])
    assert with_dedup_ids(filled) == filled


def test_wire_documents_carry_the_same_ids_as_the_stamped_models() -> None:
    messages = [
        OutgoingMessage(body={"n": n}, key="k", headers={"h": "v"}, priority=n % 10)
        for n in range(20)
    ]
    messages[3] = OutgoingMessage(body=3, dedup_id="mine")
    stamped = with_dedup_ids(messages[5:], "p", 5)
    assert wire_messages(messages[5:], "p", 5) == [m.model_dump(mode="json") for m in stamped]
    assert wire_messages(messages, "p")[3]["dedup_id"] == "mine"
    assert wire_messages(messages, "p")[7]["dedup_id"] == "p-7"
    assert messages[7].dedup_id is None


def test_batches_split_in_order_with_a_short_last_one() -> None:
    parts = list(batches(list(range(1001)), 500))
    assert [len(p) for p in parts] == [500, 500, 1]
    assert [x for p in parts for x in p] == list(range(1001))
    assert list(batches([], 10)) == []


def test_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(batches([1], 0))


async def test_publishing_nothing_needs_no_broker_and_a_bad_batch_size_is_refused_first() -> None:
    async with BrokerClient("http://127.0.0.1:9", retries=0) as client:  # nothing listens
        assert await client.publish("jobs", []) == []
        with pytest.raises(ValueError, match="at least 1"):
            await client.publish("jobs", [OutgoingMessage(body=1)], batch_size=0)
