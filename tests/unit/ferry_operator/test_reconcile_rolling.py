"""reconcile.rolling: which broker pod of a replicated Queue goes next, if any."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ferry.operator.reconcile.rolling import (
    DELETE_AGAIN_AFTER,
    Plan,
    Rolling,
    Step,
)
from ferry.operator.reconcile.rolling import next_step as plan_of

pytestmark = pytest.mark.unit
NEW, OLD = "rev-new", "rev-old"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def next_step(sts: dict[str, Any], pods: list[dict[str, Any]]) -> Step | None:
    """The pod to delete with nothing recorded; the record is then that pod's."""
    plan = plan_of(sts, pods, None, NOW)
    if plan.delete is not None:
        assert plan.record == Rolling(plan.delete.pod, plan.delete.uid, NOW)
    else:
        assert plan.record is None
    return plan.delete and Step(plan.delete.pod, plan.delete.leader, plan.delete.revision)


def sts(replicas: int = 3, *, observed: int = 2, revision: str | None = NEW) -> dict[str, Any]:
    return {"metadata": {"name": "q-broker", "generation": 2},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "updateRevision": revision}}


def pod(i: int, revision: str, *, ready: bool = False, running: bool = True,
        going: bool = False, uid: str = "", started: bool | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"q-broker-{i}", "uid": uid or f"u{i}",
                            "labels": {"controller-revision-hash": revision}}
    if going:
        meta["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    state = {"running": {}} if running else {"waiting": {"reason": "ContainerCreating"}}
    return {"metadata": meta, "status": {
        "phase": "Running" if running else "Pending",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{"name": "broker", "started": running if started is None else started,
                               "state": state}]}}


def test_standbys_go_first_highest_ordinal_first_then_the_leader() -> None:
    pods = [pod(0, OLD, ready=True), pod(1, OLD), pod(2, OLD)]
    assert next_step(sts(), pods) == Step("q-broker-2", leader=False, revision=NEW)
    pods[2] = pod(2, NEW)
    assert next_step(sts(), pods) == Step("q-broker-1", leader=False, revision=NEW)
    pods[1] = pod(1, NEW)
    assert next_step(sts(), pods) == Step("q-broker-0", leader=True, revision=NEW)
    pods[0] = pod(0, NEW)
    assert next_step(sts(), pods) is None  # rolled out


def test_the_leader_may_be_any_ordinal() -> None:
    pods = [pod(0, OLD), pod(1, OLD, ready=True)]
    assert next_step(sts(2), pods) == Step("q-broker-0", leader=False, revision=NEW)
    assert next_step(sts(2), [pod(0, NEW), pods[1]]) == Step("q-broker-1", leader=True,
                                                             revision=NEW)


def test_one_pod_at_a_time() -> None:
    leader = pod(0, OLD, ready=True)
    assert next_step(sts(), [leader, pod(1, OLD), pod(2, OLD, going=True)]) is None
    assert next_step(sts(), [leader, pod(1, OLD)]) is None  # the deleted one not back yet
    assert next_step(sts(), [leader, pod(1, OLD), pod(2, NEW, running=False)]) is None


def test_nothing_goes_while_no_leader_serves() -> None:
    assert next_step(sts(2), [pod(0, OLD), pod(1, NEW)]) is None


def test_nothing_goes_before_the_controller_made_the_revision() -> None:
    pods = [pod(0, OLD, ready=True), pod(1, OLD)]
    assert next_step(sts(2, observed=1), pods) is None
    assert next_step(sts(2, revision=None), pods) is None
    assert next_step(sts(2, revision=OLD), pods) is None  # nothing changed


def rolled(i: int, ago: timedelta = timedelta(seconds=5)) -> Rolling:
    return Rolling(f"q-broker-{i}", f"u{i}", NOW - ago)


def test_a_recorded_pod_not_back_holds_every_other_pod_without_any_memory() -> None:
    """Regression: the guard lived in one operator's memory. With the deletion of pod 2
    recorded (status.rolling) but not yet in the view (the watch lags, or another operator
    replica's cache), nothing goes: before, that pod was deleted again by name, which could
    hit its replacement."""
    leader = pod(0, OLD, ready=True)
    pods = [leader, pod(1, OLD), pod(2, OLD)]
    assert plan_of(sts(), pods, rolled(2), NOW) == Plan(rolled(2))
    for view in ([leader, pod(1, OLD)],                                 # gone
                 [leader, pod(1, OLD), pod(2, OLD, going=True)],        # going
                 [leader, pod(1, OLD), pod(2, NEW, uid="v2", running=False)],  # coming
                 [leader, pod(1, OLD), pod(2, NEW, uid="v2", started=False)]):  # probing
        assert plan_of(sts(), view, rolled(2), NOW) == Plan(rolled(2)), view


def test_once_the_recorded_pod_started_again_the_next_goes_and_is_recorded() -> None:
    pods = [pod(0, OLD, ready=True), pod(1, OLD), pod(2, NEW, uid="v2")]
    plan = plan_of(sts(), pods, rolled(2), NOW)
    assert plan.delete == Step("q-broker-1", leader=False, revision=NEW, uid="u1")
    assert plan.record == Rolling("q-broker-1", "u1", NOW)
    done = [pod(0, NEW, ready=True, uid="v0"), pod(1, NEW, uid="v1"), pods[2]]
    assert plan_of(sts(), done, rolled(0), NOW) == Plan(None)  # record cleared


def test_a_recorded_deletion_never_seen_is_made_again_on_that_same_pod() -> None:
    """The operator stopped between recording and deleting: after a while, the same pod is
    deleted again (its uid a precondition), never another one."""
    pods = [pod(0, OLD, ready=True), pod(1, OLD), pod(2, OLD)]
    plan = plan_of(sts(), pods, rolled(2, DELETE_AGAIN_AFTER), NOW)
    assert plan.delete == Step("q-broker-2", leader=False, revision=NEW, uid="u2")
    assert plan.record == Rolling("q-broker-2", "u2", NOW)


def test_a_record_no_longer_needed_is_cleared() -> None:
    pods = [pod(0, NEW, ready=True), pod(1, NEW)]
    assert plan_of(sts(2), pods, rolled(2), NOW) == Plan(None)  # the set shrank below it
    # The spec went back to the recorded pod's revision before it was deleted.
    assert plan_of(sts(2), [pod(0, NEW, ready=True), pod(1, NEW)], rolled(1), NOW) == Plan(None)


def test_the_record_round_trips_through_the_status() -> None:
    record = rolled(2)
    assert Rolling.from_status({"rolling": record.for_status()}) == record
    assert Rolling.from_status({"rolling": None}) is None
    assert Rolling.from_status(None) is None
