"""A replicated Queue on PostgreSQL (spec.replicas, spec.storage.engine: postgres): its
children on a real API server, its status, the CEL rules that keep it coherent, and the
operator rolling a changed spec through its broker pods (run by the process kubelet)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from operating import apply, cr, get, table
from testsupport.ports import free_port
from testsupport.services import ThreadedService

from ferry.operator.reconcile.queues import BROKER_PORT

pytestmark = pytest.mark.envtest
PG = {"engine": "postgres", "postgres": {"secretRef": {"name": "orders-db", "key": "uri"}}}


def test_replicated_queue_children_spread_and_status(control_plane: Any, namespace: str,
                                                     broker: Any, run_operator: Any,
                                                     eventually: Any) -> None:
    run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("Queue", "orders", {"replicas": 2, "storage": PG}))
    sts = eventually(lambda: get(control_plane, namespace, "statefulset", "orders-broker"),
                     "the broker StatefulSet")
    spec = sts["spec"]
    assert (spec["replicas"], spec["podManagementPolicy"], spec["updateStrategy"]["type"]) == (
        2, "Parallel", "OnDelete")
    assert "volumeClaimTemplates" not in spec
    pod = spec["template"]["spec"]
    env = {e["name"]: e.get("valueFrom") for e in pod["containers"][0]["env"]}
    assert env["FERRY_POSTGRES"] == {"secretKeyRef": {"name": "orders-db", "key": "uri"}}
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert pod["affinity"]["podAntiAffinity"]
    budget = eventually(lambda: get(control_plane, namespace, "poddisruptionbudget",
                                    "orders-broker"), "the broker's budget")
    assert budget["spec"]["maxUnavailable"] == 1  # one broker may go at a time
    queue = eventually(lambda: (q := get(control_plane, namespace, "queue", "orders"))
                       and (q.get("status") or {}).get("engine") == "postgres" and q,
                       "status names the engine")
    assert queue["status"]["leader"] == ""  # envtest runs no pods: nobody leads
    assert "LEADER" in next(iter(table(control_plane, namespace, "queues").values()))


@pytest.mark.parametrize(("spec", "message"), [
    ({"replicas": 2}, "replicas above 1 need storage.engine: postgres"),
    ({"storage": {"engine": "postgres"}}, "needs storage.postgres.secretRef"),
    ({"replicas": 2, "storage": PG, "broker": {"url": "http://b:1"}},
     "replicas apply to the broker Ferry runs"),
])
def test_incoherent_replicated_queues_are_rejected(control_plane: Any, ferry_crds: None,
                                                    namespace: str, spec: dict[str, Any],
                                                    message: str) -> None:
    result = apply(control_plane, namespace, cr("Queue", "bad", spec), check=False)
    assert result.returncode != 0 and message in result.stderr


def test_the_engine_is_immutable(control_plane: Any, ferry_crds: None, namespace: str) -> None:
    apply(control_plane, namespace, cr("Queue", "fixed", {}))
    result = apply(control_plane, namespace, cr("Queue", "fixed", {"storage": PG}), check=False)
    assert result.returncode != 0 and "storage.engine is immutable" in result.stderr


def _broker_ports(kubelet: Any) -> list[int]:
    """Ports of the broker pods the process kubelet runs (read from the Service's thread)."""
    try:
        containers = list(kubelet.containers.values())
    except RuntimeError:  # changed while read: the Service asks again
        return []
    return [c.ports[BROKER_PORT] for c in containers
            if c.component == "broker" and c.child is not None]


def _rolled_events(plane: Any, namespace: str) -> list[str]:
    out = plane.kubectl("get", "events", "-n", namespace, "-o", "json",
                        "--field-selector", "reason=Rolled").stdout
    items = sorted(json.loads(out)["items"],
                   key=lambda e: e.get("eventTime") or e.get("firstTimestamp") or "")
    return [e["message"] for e in items]


@pytest.fixture
def replicated_queue(control_plane: Any, namespace: str, run_operator: Any,
                     process_kubelet: Any, postgres: str, eventually: Any) -> Iterator[str]:
    """Queue `orders` on two broker pods over the session's PostgreSQL, Ready: its leader."""
    kubelet = process_kubelet()
    service = ThreadedService(free_port(), lambda: _broker_ports(kubelet)).start()
    try:
        control_plane.kubectl("create", "secret", "generic", "-n", namespace, "orders-db",
                              f"--from-literal=uri={postgres}")
        run_operator(broker_url=service.url)
        apply(control_plane, namespace, cr("Queue", "orders", {"replicas": 2, "storage": PG}))
        def led() -> dict[str, Any] | None:
            q = get(control_plane, namespace, "queue", "orders")
            return q if q and (q.get("status") or {}).get("leader") else None

        queue = eventually(led, "a leader", timeout=180)
        yield str(queue["status"]["leader"])
    finally:
        service.stop()


@pytest.mark.timeout(900)  # a liveness bound: two brokers start, then roll one by one
def test_a_changed_replicated_queue_rolls_its_standby_first_and_its_leader_last(
        control_plane: Any, namespace: str, replicated_queue: str, eventually: Any) -> None:
    leader = replicated_queue
    standby = next(n for n in ("orders-broker-0", "orders-broker-1") if n != leader)
    apply(control_plane, namespace, cr("Queue", "orders", {
        "replicas": 2, "storage": PG,
        "podTemplate": {"metadata": {"annotations": {"example.com/rolled": "1"}}}}))

    def rolled() -> dict[str, Any] | None:
        sts = get(control_plane, namespace, "statefulset", "orders-broker") or {}
        status = sts.get("status") or {}
        queue = get(control_plane, namespace, "queue", "orders") or {}
        ready = [c for c in (queue.get("status") or {}).get("conditions") or []
                 if c["type"] == "Ready" and c["status"] == "True"]
        done = (status.get("updatedReplicas") == 2
                and status.get("observedGeneration") == sts["metadata"]["generation"])
        return queue if done and ready and queue["status"].get("leader") else None

    eventually(rolled, "both broker pods rolled and a leader serving", timeout=300)
    events = _rolled_events(control_plane, namespace)
    assert len(events) == 2, events  # one pod at a time, each once
    assert events[0].startswith(f"deleted pod {standby} (a standby)"), events
    assert events[1].startswith(f"deleted pod {leader} (the leader, last)"), events
    # The standby, rolled first, took over when the leader went (pods keep their names, so
    # wait for the status to say so rather than read the one that ended the roll).
    eventually(lambda: (get(control_plane, namespace, "queue", "orders") or {}).get(
        "status", {}).get("leader") == standby, f"{standby} to lead", timeout=120)
    for name in ("orders-broker-0", "orders-broker-1"):
        pod = get(control_plane, namespace, "pod", name) or {}
        assert pod["metadata"]["annotations"]["example.com/rolled"] == "1"
