"""Status that kstatus, `kubectl wait` and Argo CD read: Ready / Reconciling / Stalled beside
Progressing / Degraded; Ready only once the children rolled out the current spec; a pod that
cannot start stalls the resource; the pause annotation freezes status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ferry.broker.models import QueueSettings, QueueStats
from ferry.operator.identity import Problem
from ferry.operator.reconcile import pausing, pipelines, queues, readiness
from ferry.operator.reconcile.conditions import Phase, Reason, Verdict, conditions, paused
from ferry.operator.reconcile.observations import Failure
from ferry.operator.reconcile.specs import Owner, QueueSpec, TelemetryPipelineSpec

from .conftest import DEFAULTS, Defaulted

pytestmark = pytest.mark.unit
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = datetime(2026, 1, 2, 4, 0, 0, tzinfo=UTC)
QUEUE = Owner(api_version="ferry.dev/v1alpha1", kind="Queue", name="orders", namespace="shop",
              uid="u-1", generation=2)
STATS = QueueStats(queue="orders", settings=QueueSettings(), messages=0, published_total=0,
                   groups=[])


def sts(generation: int = 2, observed: int = 2, replicas: int = 1, updated: int = 1,
        ready: int = 1) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "orders-broker", "generation": generation},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": observed, "replicas": replicas,
                       "updatedReplicas": updated, "readyReplicas": ready}}


def pod(reason: str, message: str = "") -> dict[str, Any]:
    waiting = {"reason": reason, **({"message": message} if message else {})}
    return {"metadata": {"name": "orders-broker-0"},
            "status": {"containerStatuses": [{"name": "broker", "state": {"waiting": waiting}}]}}


def by_type(conds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conds}


@pytest.mark.parametrize(("phase", "true"), [
    (Phase.READY, {"Ready"}),
    (Phase.PROGRESSING, {"Reconciling", "Progressing"}),
    (Phase.DEGRADED, {"Stalled", "Degraded"}),
])
def test_each_condition_is_independent_and_complete(phase: Phase, true: set[str]) -> None:
    conds = conditions(Verdict(phase=phase, reason=Reason.RECONCILED, message="m"), 7, [], NOW)
    assert {c["type"] for c in conds if c["status"] == "True"} == true
    assert {c["type"] for c in conds} == {"Ready", "Reconciling", "Stalled", "Progressing",
                                          "Degraded"}
    for c in conds:
        assert c["observedGeneration"] == 7 and c["lastTransitionTime"] == "2026-01-02T03:04:05Z"
        assert c["reason"] == "Reconciled" and c["message"] == "m"


@pytest.mark.parametrize(("workload", "gap"), [
    (sts(), None),
    (sts(generation=3, observed=2), "has not yet observed generation 3"),
    (sts(updated=0, ready=1), "0/1 replicas updated"),
    (sts(replicas=2), "1 old replicas still terminating"),
    (sts(ready=0), "0/1 replicas ready"),
])
def test_a_workload_is_ready_only_once_it_rolled_out_its_spec(workload: dict[str, Any],
                                                              gap: str | None) -> None:
    found = readiness.rollout_gap(workload)
    assert (found is None) if gap is None else (found is not None and gap in found)
    assert readiness.is_ready(workload) is (gap is None)


def test_queue_ready_waits_for_the_broker_rollout(defaulted: Defaulted) -> None:
    # The broker answers (an old pod still serves) while the new spec rolls out: not Ready.
    spec = QueueSpec.model_validate(defaulted("Queue", {}))
    gap = readiness.rollout_gap(sts(updated=0))
    st = queues.status(owner=QUEUE, spec=spec, endpoint_url="http://e", ready_replicas=1,
                       stats=STATS, failure=None, previous=[], now=NOW, rollout=gap)
    conds = by_type(st["conditions"])
    assert conds["Ready"]["status"] == "False"
    assert conds["Reconciling"]["status"] == "True"
    assert conds["Reconciling"]["reason"] == "RollingOut"
    assert "0/1 replicas updated" in conds["Reconciling"]["message"]
    done = queues.status(owner=QUEUE, spec=spec, endpoint_url="http://e", ready_replicas=1,
                         stats=STATS, failure=None, previous=st["conditions"], now=LATER,
                         rollout=readiness.rollout_gap(sts()))
    assert by_type(done["conditions"])["Ready"]["status"] == "True"


def test_a_broker_that_cannot_start_stalls_the_queue(defaulted: Defaulted) -> None:
    spec = QueueSpec.model_validate(defaulted("Queue", {}))
    why = readiness.stuck([pod("ImagePullBackOff", "Back-off pulling image \"nope\"")])
    assert why is not None and "orders-broker-0" in why and "ImagePullBackOff" in why
    st = queues.status(owner=QUEUE, spec=spec, endpoint_url="http://e", ready_replicas=0,
                       stats=None, failure=None, previous=[], now=NOW,
                       rollout=readiness.rollout_gap(sts(ready=0)), stuck=why)
    conds = by_type(st["conditions"])
    assert (conds["Stalled"]["status"], conds["Stalled"]["reason"]) == ("True", "PodsFailing")
    assert "Back-off pulling image" in conds["Stalled"]["message"]
    assert conds["Ready"]["status"] == "False" and conds["Reconciling"]["status"] == "False"
    assert readiness.stuck([pod("ContainerCreating")]) is None  # still starting, not stuck


def running(name: str = "orders-broker-0", *, deleted: bool = False) -> dict[str, Any]:
    meta = {"name": name, **({"deletionTimestamp": "2026-01-02T03:04:05Z"} if deleted else {})}
    return {"metadata": meta, "status": {"phase": "Running", "containerStatuses": [
        {"name": "broker", "started": True, "state": {"running": {}}}]}}


@pytest.mark.parametrize(("pods", "why"), [
    ([running(deleted=True)], "pod orders-broker-0 is being deleted"),
    ([], "0/1 broker pods exist"),
    ([pod("ContainerCreating")], "pod orders-broker-0 is starting"),
])
def test_a_broker_gone_with_its_pod_is_starting_not_degraded(
        defaulted: Defaulted, pods: list[dict[str, Any]], why: str) -> None:
    # A roll: the StatefulSet's controller deleted the pod and has not yet written its
    # status (readyReplicas still 1); the broker stopped answering. Argo CD must not see
    # Degraded for that moment of every roll (it did, in the Argo CD tier).
    spec = QueueSpec.model_validate(defaulted("Queue", {}))
    gone = Failure(problem=Problem.UNREACHABLE, message="http://e: the broker did not answer")
    assert readiness.replacing(pods, 1) == why
    st = queues.status(owner=QUEUE, spec=spec, endpoint_url="http://e", ready_replicas=1,
                       stats=None, failure=gone, previous=[], now=NOW,
                       rollout=readiness.replacing(pods, 1))
    conds = by_type(st["conditions"])
    assert (conds["Reconciling"]["status"], conds["Reconciling"]["reason"]) == (
        "True", "BrokerStarting")
    assert conds["Stalled"]["status"] == "False"
    # Its pod up and the broker still not answering: that is trouble.
    assert readiness.replacing([running()], 1) is None
    st = queues.status(owner=QUEUE, spec=spec, endpoint_url="http://e", ready_replicas=1,
                       stats=None, failure=gone, previous=[], now=NOW, rollout=None)
    assert by_type(st["conditions"])["Reconciling"]["status"] == "False"


def test_a_pipeline_with_a_workload_that_cannot_start_is_stalled(defaulted: Defaulted) -> None:
    owner = Owner(api_version="ferry.dev/v1alpha1", kind="TelemetryPipeline", name="gpu",
                  namespace="shop", uid="u-2", generation=1)
    spec = TelemetryPipelineSpec.model_validate(defaulted("TelemetryPipeline", {
        "streamer": {"source": {"path": "/data/x.csv"}}, "api": {"enabled": False}}))
    desired = pipelines.children(owner, spec, "http://b", DEFAULTS)
    observed = {f"{m['kind']}/{m['metadata']['name']}": m for m in desired}
    st = pipelines.status(owner=owner, desired=desired, observed=observed,
                          endpoint_url="http://b", previous=[], now=NOW,
                          stuck={"Deployment/gpu-collector": "pod c-1: CrashLoopBackOff"})
    stalled = by_type(st["conditions"])["Stalled"]
    assert stalled["status"] == "True" and "CrashLoopBackOff" in stalled["message"]


def test_pausing_keeps_the_status_and_adds_reconciliation_paused() -> None:
    before = conditions(Verdict(phase=Phase.READY, reason=Reason.RECONCILED, message="ok"),
                        2, [], NOW)
    held = paused(before, 3, LATER)
    assert [c for c in held if c["type"] != "ReconciliationPaused"] == before
    flag = by_type(held)["ReconciliationPaused"]
    assert (flag["status"], flag["reason"], flag["observedGeneration"]) == (
        "True", "ReconciliationPaused", 3)
    assert pausing.shows_paused(held)
    assert paused(held, 3, datetime(2027, 1, 1, tzinfo=UTC)) == held  # idempotent
    resumed = conditions(Verdict(phase=Phase.READY, reason=Reason.RECONCILED, message="ok"),
                         3, held, datetime(2027, 1, 1, tzinfo=UTC))
    flag = by_type(resumed)["ReconciliationPaused"]
    assert (flag["status"], flag["reason"]) == ("False", "ReconciliationResumed")
    assert not pausing.shows_paused(resumed)


def test_the_pause_annotation_and_pending_generations() -> None:
    assert pausing.is_paused({"ferry.dev/reconcile": "paused"})
    assert not pausing.is_paused({"ferry.dev/reconcile": "active"})
    assert pausing.unapplied({"metadata": {"generation": 3}, "status": {"observedGeneration": 2}})
    assert not pausing.unapplied({"metadata": {"generation": 3},
                                  "status": {"observedGeneration": 3}})
    assert not pausing.unapplied({"metadata": {"generation": 1}})  # never reconciled yet


def test_a_stuck_broker_pod_of_an_older_revision_is_replaced() -> None:
    # A StatefulSet waits forever for a broken pod to become ready before it replaces it
    # (kubernetes#67250): after a fix, the operator deletes the pod of the broken revision.
    workload = {**sts(), "status": {**sts()["status"], "updateRevision": "orders-broker-good"}}

    def at(revision: str, reason: str) -> dict[str, Any]:
        found = pod(reason)
        found["metadata"]["labels"] = {"controller-revision-hash": revision}
        return found

    assert readiness.stale_and_stuck(workload, [at("orders-broker-bad", "ImagePullBackOff")]) \
        == ["orders-broker-0"]
    assert readiness.stale_and_stuck(workload, [at("orders-broker-good", "ImagePullBackOff")]) \
        == []  # the wanted revision itself is broken: nothing to gain, keep it Stalled
    assert readiness.stale_and_stuck(workload, [at("orders-broker-bad", "ContainerCreating")]) \
        == []
    deployment = {**workload, "kind": "Deployment"}
    assert readiness.stale_and_stuck(deployment, [at("x", "ImagePullBackOff")]) == []


def test_no_handler_keeps_its_progress_in_the_pause_annotation() -> None:
    # kopf stores each handler's progress in the annotation ferry.dev/<handler id>.
    import kopf

    from ferry.operator.handlers import common
    from ferry.operator.settings import OperatorSettings

    registry = kopf.OperatorRegistry()

    async def reconcile(*_: Any, **__: Any) -> None:
        return None

    common.register_kind(registry, OperatorSettings(), "queues", reconcile)
    ids = {str(h.id).split("/")[0] for h in registry._changing.get_all_handlers()}
    assert pausing.ANNOTATION.split("/")[1] not in ids
