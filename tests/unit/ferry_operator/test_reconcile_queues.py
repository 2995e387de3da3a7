"""Queue -> broker workload, broker settings, endpoint and status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ferry.broker.models import (
    ConsumerInfo,
    GroupSettings,
    GroupStats,
    Overflow,
    QueueSettings,
    QueueStats,
)
from ferry.operator.reconcile import queues, readiness
from ferry.operator.reconcile.metadata import OWNER_UID
from ferry.operator.reconcile.observations import Failure, Problem
from ferry.operator.reconcile.specs import Owner, QueueSpec

from .conftest import DEFAULTS, Defaulted

pytestmark = pytest.mark.unit
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
OWNER = Owner(api_version="ferry.dev/v1alpha1", kind="Queue", name="orders", namespace="shop",
              uid="u-1", generation=3)


def spec(defaulted: Defaulted, **fields: object) -> QueueSpec:
    return QueueSpec.model_validate(defaulted("Queue", dict(fields)))


def stats(*groups: GroupStats) -> QueueStats:
    return QueueStats(queue="orders", settings=QueueSettings(), messages=42, published_total=50,
                      groups=list(groups))


def group(name: str, in_flight: int, dead: int, consumers: int) -> GroupStats:
    return GroupStats(
        queue="orders", group=name, settings=GroupSettings(), depth=1, in_flight=in_flight,
        delayed=0, dead=dead, lag=1 + in_flight, backlog=1 + in_flight,
        oldest_ready_age_ms=0, acked_total=0,
        consumers=[ConsumerInfo(name=f"c{i}", last_seen_ms=0, in_flight=0)
                   for i in range(consumers)])


def test_managed_broker_children_carry_owner_reference_and_labels(defaulted: Defaulted) -> None:
    kids = queues.children(OWNER, spec(defaulted), DEFAULTS)
    assert [(k["kind"], k["metadata"]["name"]) for k in kids] == [
        ("ConfigMap", "orders-broker"), ("Service", "orders-broker-headless"),
        ("Service", "orders-broker"), ("StatefulSet", "orders-broker"),
        ("PodDisruptionBudget", "orders-broker")]
    for kid in kids:
        assert kid["metadata"]["namespace"] == "shop"
        assert kid["metadata"]["ownerReferences"] == [{
            "apiVersion": "ferry.dev/v1alpha1", "kind": "Queue", "name": "orders", "uid": "u-1",
            "controller": True, "blockOwnerDeletion": True}]
        assert kid["metadata"]["labels"][OWNER_UID] == "u-1"


def test_existing_broker_by_url_creates_no_workload(defaulted: Defaulted) -> None:
    assert queues.children(OWNER, spec(defaulted, broker={"url": "http://b:1"}), DEFAULTS) == []


def test_statefulset_uses_spec_storage_image_and_is_locked_down(defaulted: Defaulted) -> None:
    s = spec(defaulted, storage={"size": "5Gi", "storageClassName": "fast"},
             broker={"image": "ferry:x"}, deletionPolicy="Retain")
    sts = next(k for k in queues.children(OWNER, s, DEFAULTS) if k["kind"] == "StatefulSet")
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "5Gi"
    assert claim["storageClassName"] == "fast"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "ferry:x"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                      "limits": {"memory": "512Mi"}}


def test_settings_change_rolls_the_broker_pod(defaulted: Defaulted) -> None:
    def digest(s: QueueSpec) -> str:
        sts = next(k for k in queues.children(OWNER, s, DEFAULTS) if k["kind"] == "StatefulSet")
        return str(sts["spec"]["template"]["metadata"]["annotations"][queues.CONFIG_HASH])
    assert digest(spec(defaulted)) == digest(spec(defaulted))
    assert digest(spec(defaulted)) != digest(spec(defaulted, maxDeliveries=9))


def test_broker_settings_convert_durations(defaulted: Defaulted) -> None:
    s = spec(defaulted, retention="1h30m", visibilityTimeout="1.5s", fair=True)
    assert queues.broker_settings(s) == QueueSettings(
        retention_ms=5_400_000, visibility_timeout_ms=1500, fair=True)


def test_endpoint_prefers_spec_url_then_override_then_service(defaulted: Defaulted) -> None:
    managed, external = spec(defaulted), spec(defaulted, broker={"url": "http://ext:9/"})
    assert queues.endpoint("shop", "orders", managed, None) == \
        "http://orders-broker.shop.svc:7070"
    assert queues.endpoint("shop", "orders", managed, "http://127.0.0.1:5") == \
        "http://127.0.0.1:5"
    assert queues.endpoint("shop", "orders", external, "http://127.0.0.1:5") == "http://ext:9"


def _conditions(status: dict[str, object]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}  # type: ignore[attr-defined]


def test_status_sums_group_figures_and_reports_ready(defaulted: Defaulted) -> None:
    st = queues.status(owner=OWNER, spec=spec(defaulted), endpoint_url="http://e",
                       ready_replicas=1, stats=stats(group("a", 2, 1, 3), group("b", 5, 0, 1)),
                       failure=None, previous=[], now=NOW)
    assert {k: st[k] for k in ("depth", "inFlight", "dead", "consumers", "groups")} == {
        "depth": 42, "inFlight": 7, "dead": 1, "consumers": 4, "groups": 2}
    assert st["observedGeneration"] == 3
    assert _conditions(st) == {"Ready": ("True", "Reconciled"),
                               "Reconciling": ("False", "Reconciled"),
                               "Stalled": ("False", "Reconciled"),
                               "Progressing": ("False", "Reconciled"),
                               "Degraded": ("False", "Reconciled")}


@pytest.mark.parametrize(("url", "replicas", "problem", "expected"), [
    (None, 0, Problem.UNREACHABLE, ("Progressing", "BrokerStarting")),
    (None, 1, Problem.UNREACHABLE, ("Degraded", "BrokerUnreachable")),
    ("http://ext:1", 0, Problem.UNREACHABLE, ("Degraded", "BrokerUnreachable")),
    (None, 1, Problem.REJECTED, ("Degraded", "BrokerRejected")),
])
def test_failures_map_to_phase_and_reason(defaulted: Defaulted, url: str | None, replicas: int,
                                          problem: Problem, expected: tuple[str, str]) -> None:
    s = spec(defaulted, **({"broker": {"url": url}} if url else {}))
    st = queues.status(owner=OWNER, spec=s, endpoint_url="http://e", ready_replicas=replicas,
                       stats=None, failure=Failure(problem=problem, message="boom"),
                       previous=[], now=NOW)
    phase, reason = expected
    conds = _conditions(st)
    assert conds[phase] == ("True", reason)
    twin = {"Progressing": "Reconciling", "Degraded": "Stalled"}[phase]  # kstatus's name
    assert [t for t, (v, _) in conds.items() if v == "True"] == [twin, phase]
    assert "depth" not in st  # figures are kept as they were, not zeroed


def test_transition_time_moves_only_when_status_changes(defaulted: Defaulted) -> None:
    s = spec(defaulted)
    first = queues.status(owner=OWNER, spec=s, endpoint_url="e", ready_replicas=1,
                          stats=stats(), failure=None, previous=[], now=NOW)
    later = datetime(2026, 1, 2, 4, 0, 0, tzinfo=UTC)
    same = queues.status(owner=OWNER, spec=s, endpoint_url="e", ready_replicas=1,
                         stats=stats(), failure=None, previous=first["conditions"], now=later)
    assert same["conditions"] == first["conditions"]
    broken = queues.status(owner=OWNER, spec=s, endpoint_url="e", ready_replicas=1, stats=None,
                           failure=Failure(problem=Problem.REJECTED, message="x"),
                           previous=first["conditions"], now=later)
    times = {c["type"]: c["lastTransitionTime"] for c in broken["conditions"]}
    assert times == {"Ready": "2026-01-02T04:00:00Z", "Degraded": "2026-01-02T04:00:00Z",
                     "Stalled": "2026-01-02T04:00:00Z", "Progressing": "2026-01-02T03:04:05Z",
                     "Reconciling": "2026-01-02T03:04:05Z"}


@pytest.mark.parametrize(("fields", "when_deleted"), [
    ({}, "Retain"),
    ({"deletionPolicy": "Delete"}, "Retain"),  # the queue goes from the broker, the volume stays
    ({"storage": {"deleteClaim": True}}, "Delete"),
])
def test_the_broker_volume_outlives_its_queue_unless_asked(
        defaulted: Defaulted, fields: dict[str, object], when_deleted: str) -> None:
    sts = next(c for c in queues.children(OWNER, spec(defaulted, **fields), DEFAULTS)
               if c["kind"] == "StatefulSet")
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": when_deleted, "whenScaled": "Retain"}



def test_max_depth_and_overflow_reach_the_broker(defaulted: Defaulted) -> None:
    unbounded = queues.broker_settings(spec(defaulted))
    assert (unbounded.max_depth, unbounded.overflow) == (None, Overflow.REJECT_PUBLISH)
    bounded = queues.broker_settings(spec(defaulted, maxDepth=5000, overflow="DropOldest"))
    assert (bounded.max_depth, bounded.overflow) == (5000, Overflow.DROP_OLDEST)


def test_disruption_budget_never_blocks_a_drain(defaulted: Defaulted) -> None:
    kids = queues.children(OWNER, spec(defaulted), DEFAULTS)
    (budget,) = [k for k in kids if k["kind"] == "PodDisruptionBudget"]
    assert budget["spec"]["maxUnavailable"] == 1 and "minAvailable" not in budget["spec"]


def test_unmanaged_budget_is_left_to_the_admins(defaulted: Defaulted) -> None:
    s = spec(defaulted, broker={"disruptionBudget": "Unmanaged"})
    assert not queues.manages_budget(s)
    assert "PodDisruptionBudget" not in [k["kind"] for k in queues.children(OWNER, s, DEFAULTS)]


PG = {"engine": "postgres", "postgres": {"secretRef": {"name": "orders-db", "key": "uri"}}}


def test_replicated_postgres_brokers_share_a_database_and_spread(defaulted: Defaulted) -> None:
    kids = {k["kind"]: k for k in queues.children(OWNER, spec(defaulted, replicas=2, storage=PG),
                                                  DEFAULTS)}
    sts = kids["StatefulSet"]["spec"]
    assert (sts["replicas"], sts["podManagementPolicy"]) == (2, "Parallel")
    assert sts["updateStrategy"] == {"type": "OnDelete"}  # a standby is never Ready
    assert "volumeClaimTemplates" not in sts  # the data is the database's
    pod = sts["template"]["spec"]
    (broker,) = pod["containers"]
    assert "--data-dir" not in broker["args"]
    assert [m["name"] for m in broker["volumeMounts"]] == ["token"]  # no data volume
    # Started (what says a rolled standby is back, as it is never Ready) once alive.
    assert broker["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    env = {e["name"]: e["valueFrom"] for e in broker["env"]}
    assert env["FERRY_POSTGRES"] == {"secretKeyRef": {"name": "orders-db", "key": "uri"}}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    args = broker["args"]
    assert args[args.index("--postgres-schema") + 1].startswith("ferry_orders_")
    selector = sts["selector"]
    assert [(c["topologyKey"], c["labelSelector"]) for c in pod["topologySpreadConstraints"]] == [
        ("kubernetes.io/hostname", selector), ("topology.kubernetes.io/zone", selector)]
    (apart,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert apart["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert kids["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_postgres_schema_is_unique_per_namespace_and_may_be_named(defaulted: Defaulted) -> None:
    s = spec(defaulted, storage=PG)
    other = OWNER.model_copy(update={"namespace": "billing"})
    assert queues.postgres_schema(OWNER, s) != queues.postgres_schema(other, s)
    named = spec(defaulted, storage={**PG, "postgres": {**PG["postgres"], "schema": "orders"}})
    assert queues.postgres_schema(OWNER, named) == "orders"


def test_status_names_the_engine_and_the_leading_pod(defaulted: Defaulted) -> None:
    since = "2026-01-02T03:00:00Z"
    pods = [{"metadata": {"name": "orders-broker-0"}, "status": {"conditions": [
                {"type": "Ready", "status": "False"}]}},
            {"metadata": {"name": "orders-broker-1"}, "status": {"conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": since}]}}]
    leader = queues.leader_of(pods)
    assert leader == ("orders-broker-1", since)
    out = queues.status(owner=OWNER, spec=spec(defaulted, replicas=2, storage=PG),
                        endpoint_url="http://b", ready_replicas=1, stats=stats(), failure=None,
                        previous=[], now=NOW, leader=leader)
    assert (out["engine"], out["leader"], out["leaderSince"]) == (
        "postgres", "orders-broker-1", since)
    embedded = queues.status(owner=OWNER, spec=spec(defaulted), endpoint_url="http://b",
                             ready_replicas=1, stats=stats(), failure=None, previous=[], now=NOW)
    assert embedded["engine"] == "embedded" and "leader" not in embedded
    assert queues.leader_of(pods[:1]) is None


def test_one_ready_leader_is_a_rolled_out_replicated_queue(defaulted: Defaulted) -> None:
    sts = {"kind": "StatefulSet", "metadata": {"name": "orders-broker", "generation": 1},
           "spec": {"replicas": 2}, "status": {"observedGeneration": 1, "replicas": 2,
                                               "updatedReplicas": 2, "readyReplicas": 1}}
    assert readiness.rollout_gap(sts) == "StatefulSet orders-broker: 1/2 replicas ready"
    wanted = queues.ready_wanted(spec(defaulted, replicas=2, storage=PG))
    assert readiness.rollout_gap(sts, ready_wanted=wanted) is None
