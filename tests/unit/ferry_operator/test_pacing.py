"""New resources first: timer passes of reconciled resources wait (a bounded while) for them."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.operator.reconcile.pacing import Pacing, awaits_first_pass, defer

pytestmark = pytest.mark.unit


def queue(uid: str, *, reconciled: bool = False, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"uid": uid, "name": uid, "namespace": "shop"}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    status = {"conditions": [{"type": "Ready", "status": "True"}]} if reconciled else {}
    return {"kind": "Queue", "metadata": meta, "status": status}


def test_only_a_resource_with_no_status_and_not_being_deleted_awaits_its_first_pass() -> None:
    assert awaits_first_pass(queue("a"))
    assert not awaits_first_pass(queue("a", reconciled=True))
    assert not awaits_first_pass(queue("a", deleting=True))


def test_a_timer_pass_waits_for_new_resources_a_minute_at_most() -> None:
    assert not defer(0, 0, 10.0)
    assert [defer(3, n, 10.0) for n in range(7)] == [True] * 6 + [False]
    assert [defer(3, n, 30.0) for n in range(3)] == [True, True, False]
    assert not defer(3, 0, 120.0)  # a timer slower than the bound is never skipped


def test_timer_passes_are_skipped_while_a_new_resource_waits_then_run_again() -> None:
    pacing, ready = Pacing(), queue("ready", reconciled=True)
    pacing.note("ADDED", ready)
    assert not pacing.skip(ready, "stats", 10.0)  # nothing waits
    pacing.note("ADDED", queue("new"))
    skipped = [pacing.skip(ready, "stats", 10.0) for _ in range(14)]
    assert skipped == ([True] * 6 + [False]) * 2  # runs once a minute meanwhile
    assert pacing.skip(ready, "resync", 30.0)  # each timer counts its own
    pacing.note("MODIFIED", queue("new", reconciled=True))  # its first pass wrote status
    assert not pacing.skip(ready, "stats", 10.0)
    assert not pacing.skip(ready, "resync", 30.0)


def test_a_deleted_resource_no_longer_waits_nor_counts() -> None:
    pacing, ready = Pacing(), queue("ready", reconciled=True)
    pacing.note("ADDED", queue("new"))
    assert pacing.skip(ready, "stats", 10.0)
    pacing.note("DELETED", queue("new"))
    pacing.note("DELETED", ready)
    assert pacing.waiting == set() and pacing.deferred == {}
