"""The stats stream's shared snapshot: one build serves every stream while fresh."""

from __future__ import annotations

import asyncio
import json

import pytest

from ferry.broker.transport.watching import FRESH_MS, Latest, Snapshot

pytestmark = pytest.mark.unit


async def test_streams_share_a_fresh_snapshot_and_build_one_at_a_time() -> None:
    clock = [10_000]
    builds: list[int] = []

    async def build(now: int) -> Snapshot:
        builds.append(now)
        await asyncio.sleep(0)  # others ask meanwhile: they wait for this build
        return Snapshot(now, [("a", b'{"queue":"a"}')])

    latest = Latest()
    first = await asyncio.gather(*(latest.get(lambda: clock[0], build) for _ in range(5)))
    assert builds == [10_000] and {s.at_ms for s in first} == {10_000}
    clock[0] += FRESH_MS - 1
    assert (await latest.get(lambda: clock[0], build)).at_ms == 10_000 and len(builds) == 1
    clock[0] += 1
    assert (await latest.get(lambda: clock[0], build)).at_ms == 10_000 + FRESH_MS
    assert len(builds) == 2


def test_the_event_is_the_stats_event_of_the_wire_models() -> None:
    snap = Snapshot(7, [("a", b'{"queue":"a"}'), ("b", b'{"queue":"b"}')])
    kind, data, end = snap.event().split(b"\n", 2)
    assert kind == b"event: stats" and end == b"\n"
    assert json.loads(data.removeprefix(b"data: ")) == {
        "at_ms": 7, "queues": [{"queue": "a"}, {"queue": "b"}]}
    assert json.loads(Snapshot(8, []).event().split(b"\n")[1][6:]) == {"at_ms": 8, "queues": []}
