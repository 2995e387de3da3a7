"""reconcile.rolling: which broker pod of a replicated Queue goes next, if any."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.operator.reconcile.rolling import Step, next_step

pytestmark = pytest.mark.unit
NEW, OLD = "rev-new", "rev-old"


def sts(replicas: int = 3, *, observed: int = 2, revision: str | None = NEW) -> dict[str, Any]:
    return {"metadata": {"name": "q-broker", "generation": 2},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "updateRevision": revision}}


def pod(i: int, revision: str, *, ready: bool = False, running: bool = True,
        going: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"q-broker-{i}", "uid": f"u{i}",
                            "labels": {"controller-revision-hash": revision}}
    if going:
        meta["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    state = {"running": {}} if running else {"waiting": {"reason": "ContainerCreating"}}
    return {"metadata": meta, "status": {
        "phase": "Running" if running else "Pending",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{"name": "broker", "started": running, "state": state}]}}


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
