"""Queues and ConsumerGroups reconciled by a real ferry-operator process against a real API
server, with a real ferry-broker process standing in for the broker pods envtest cannot run."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from operating import (
    apply,
    broker_queues,
    condition,
    cr,
    events,
    get,
    on_broker,
    queue_missing,
    reconciled,
    table,
)
from prometheus_client.parser import text_string_to_metric_families

from ferry.broker.models import OutgoingMessage

pytestmark = pytest.mark.envtest
CHILDREN = [("configmap", "orders-broker"), ("service", "orders-broker-headless"),
            ("service", "orders-broker"), ("statefulset", "orders-broker"),
            ("poddisruptionbudget", "orders-broker")]


def owned_by(obj: dict[str, Any] | None, owner: dict[str, Any]) -> bool:
    refs = (obj or {}).get("metadata", {}).get("ownerReferences") or []
    return any(r["uid"] == owner["metadata"]["uid"] and r.get("controller") for r in refs)


def test_queue_children_status_and_printer_columns(control_plane: Any, namespace: str,
                                                   broker: Any, run_operator: Any,
                                                   eventually: Any) -> None:
    run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("Queue", "orders", {"maxDeliveries": 3}))
    apply(control_plane, namespace, cr("ConsumerGroup", "workers", {"queue": "orders"}))
    queue = get(control_plane, namespace, "queue", "orders")
    assert queue is not None
    for kind, name in CHILDREN:
        eventually(lambda k=kind, n=name: owned_by(get(control_plane, namespace, k, n), queue),
                   f"{kind}/{name} owned by the Queue")
    eventually(lambda: reconciled(control_plane, namespace, "cg", "workers"),
               "the group is Ready on the broker")

    async def traffic(client: Any) -> None:
        await client.publish("orders", [OutgoingMessage(body={"n": n}) for n in range(5)])
        await client.receive("orders", "workers", "worker-1", max=2)
    on_broker(broker.url, traffic)

    def row() -> dict[str, str] | None:
        found = table(control_plane, namespace, "queues").get("orders")
        return found if found and found["DEPTH"] == "5" and found["IN-FLIGHT"] == "2" else None
    columns = eventually(row, "kubectl get queues shows the broker's figures")
    assert (columns["READY"], columns["DEAD"], columns["CONSUMERS"]) == ("True", "0", "1")
    # The row must show the receive too: a stats pass between the publish and the receive
    # already gives LAG 5 (with nothing in flight).
    group = eventually(lambda: (r := table(control_plane, namespace, "cg").get("workers"))
                       and r["LAG"] == "5" and r["IN-FLIGHT"] == "2" and r,
                       "kubectl get cg shows the lag and the leases")
    assert (group["QUEUE"], group["IN-FLIGHT"], group["CONSUMERS"]) == ("orders", "2", "1")
    status = get(control_plane, namespace, "queue", "orders")["status"]  # type: ignore[index]
    assert status["endpoint"] == broker.url and status["observedGeneration"] == 1
    assert any(r == "Created" and "StatefulSet/orders-broker" in m
               for _, r, m in events(control_plane, namespace, "orders"))


def test_drift_is_repaired(control_plane: Any, namespace: str, broker: Any, run_operator: Any,
                           eventually: Any) -> None:
    run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("Queue", "orders", {}))
    eventually(lambda: get(control_plane, namespace, "service", "orders-broker"),
               "the client Service exists")
    eventually(lambda: "orders" in broker_queues(broker.url), "the queue is on the broker")
    uid = get(control_plane, namespace, "service", "orders-broker")["metadata"]["uid"]  # type: ignore[index]
    control_plane.kubectl("delete", "-n", namespace, "service", "orders-broker")
    control_plane.kubectl("scale", "-n", namespace, "statefulset", "orders-broker",
                          "--replicas=3")
    on_broker(broker.url, lambda c: c.delete_queue("orders"))
    eventually(lambda: (s := get(control_plane, namespace, "service", "orders-broker"))
               and s["metadata"]["uid"] != uid, "the deleted Service comes back")
    eventually(lambda: get(control_plane, namespace, "statefulset", "orders-broker")
               ["spec"]["replicas"] == 1, "the scaled StatefulSet goes back to 1 replica")
    eventually(lambda: "orders" in broker_queues(broker.url),
               "the queue deleted behind Ferry's back is created again")


def test_delete_removes_the_broker_queue_and_children(control_plane: Any, namespace: str,
                                                      broker: Any, run_operator: Any,
                                                      eventually: Any) -> None:
    run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("Queue", "orders", {}))
    apply(control_plane, namespace, cr("ConsumerGroup", "workers", {"queue": "orders"}))
    eventually(lambda: reconciled(control_plane, namespace, "cg", "workers"), "the group is Ready")
    eventually(lambda: get(control_plane, namespace, "statefulset", "orders-broker"),
               "the broker StatefulSet exists")
    control_plane.kubectl("delete", "-n", namespace, "cg", "workers", "--timeout=120s")
    groups = on_broker(broker.url, lambda c: c.queue_stats("orders")).groups
    assert groups == []
    control_plane.kubectl("delete", "-n", namespace, "queue", "orders", "--timeout=120s")
    assert queue_missing(broker.url, "orders")
    for kind, name in CHILDREN:
        eventually(lambda k=kind, n=name: get(control_plane, namespace, k, n) is None,
                   f"{kind}/{name} is garbage-collected")
    assert any(r == "Deleted" for _, r, _ in events(control_plane, namespace, "orders"))


def test_a_queue_made_again_under_its_old_name_gets_a_token_secret_again(
        control_plane: Any, namespace: str, broker: Any, run_operator: Any,
        eventually: Any) -> None:
    """The operator keeps tokens in memory; the old Queue's must not stand in for the new
    one's Secret (its pods would wait for a Secret the garbage collector deleted)."""
    run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("Queue", "orders", {}))
    eventually(lambda: reconciled(control_plane, namespace, "queue", "orders"),
               "the queue is Ready")
    assert get(control_plane, namespace, "secret", "orders-broker-token") is not None
    control_plane.kubectl("delete", "-n", namespace, "queue", "orders", "--timeout=120s")
    eventually(lambda: get(control_plane, namespace, "secret", "orders-broker-token") is None,
               "the old Queue's token Secret is garbage-collected")
    apply(control_plane, namespace, cr("Queue", "orders", {}))
    queue = get(control_plane, namespace, "queue", "orders")
    assert queue is not None
    eventually(lambda: owned_by(get(control_plane, namespace, "secret", "orders-broker-token"),
                                queue), "the new Queue's token Secret is made", timeout=60)


def test_retain_keeps_the_data(control_plane: Any, namespace: str, broker: Any,
                               run_operator: Any, eventually: Any) -> None:
    run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("Queue", "keep", {"deletionPolicy": "Retain"}))
    eventually(lambda: reconciled(control_plane, namespace, "queue", "keep"), "the queue is Ready")
    on_broker(broker.url, lambda c: c.publish("keep", [OutgoingMessage(body=i)
                                                        for i in range(4)]))
    control_plane.kubectl("delete", "-n", namespace, "queue", "keep", "--timeout=120s")
    assert broker_queues(broker.url)["keep"] == 4
    assert any(r == "Retained" for _, r, _ in events(control_plane, namespace, "keep"))


def test_a_gone_broker_does_not_hold_deletion_forever(control_plane: Any, namespace: str,
                                                      run_operator: Any,
                                                      eventually: Any) -> None:
    from testsupport.ports import free_port
    run_operator("--external-broker-namespaces", namespace)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    control_plane.kubectl("create", "secret", "generic", "-n", namespace, "conn",
                          "--from-literal=token=t")
    apply(control_plane, namespace, cr("Queue", "lost", {"broker": {
        "url": dead, "connectionSecret": {"name": "conn"}}}))
    eventually(lambda: condition(get(control_plane, namespace, "queue", "lost"), "Degraded")
               == ("True", "BrokerUnreachable"), "the queue is Degraded: BrokerUnreachable")
    control_plane.kubectl("delete", "-n", namespace, "queue", "lost", "--timeout=120s")
    reasons = [(t, r) for t, r, _ in events(control_plane, namespace, "lost")]
    assert ("Warning", "DeleteFailed") in reasons
    assert ("Warning", "DeleteAbandoned") in reasons


def test_group_of_a_missing_queue_is_degraded(control_plane: Any, namespace: str,
                                              run_operator: Any, eventually: Any) -> None:
    run_operator()
    apply(control_plane, namespace, cr("ConsumerGroup", "orphan", {"queue": "nope"}))
    eventually(lambda: condition(get(control_plane, namespace, "cg", "orphan"), "Degraded")
               == ("True", "QueueNotFound"), "Degraded: QueueNotFound")
    control_plane.kubectl("delete", "-n", namespace, "cg", "orphan", "--timeout=120s")


def test_operator_serves_metrics(control_plane: Any, namespace: str, broker: Any,
                                 run_operator: Any, eventually: Any) -> None:
    operator = run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("Queue", "orders", {}))

    def reconciled() -> bool:
        with urllib.request.urlopen(f"{operator.metrics_url}/metrics") as response:
            text = response.read().decode()
        return 'ferry_operator_reconciles_total{kind="Queue",outcome="ready"}' in text
    eventually(reconciled, "/metrics counts Queue reconciles")


def test_a_group_filter_reaches_the_broker(control_plane: Any, namespace: str, broker: Any,
                                           run_operator: Any, eventually: Any) -> None:
    run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("Queue", "orders", {}))
    apply(control_plane, namespace, cr("ConsumerGroup", "eu", {
        "queue": "orders", "filter": {"match": {"type": "order"}, "prefix": {"region": "eu-"}}}))
    eventually(lambda: reconciled(control_plane, namespace, "cg", "eu"),
               "the filtered group is Ready on the broker")

    async def traffic(client: Any) -> Any:
        await client.publish("orders", [
            OutgoingMessage(body=0, headers={"type": "order", "region": "eu-west"}),
            OutgoingMessage(body=1, headers={"type": "order", "region": "us-east"}),
            OutgoingMessage(body=2)])
        return await client.group_stats("orders", "eu")
    stats = on_broker(broker.url, traffic)
    assert stats.settings.filter is not None
    assert (stats.settings.filter.match, stats.settings.filter.prefix) == (
        {"type": "order"}, {"region": "eu-"})
    assert (stats.lag, stats.filtered_total) == (1, 2)


def test_queues_sharing_a_broker_share_its_connections(control_plane: Any, namespace: str,
                                                       broker_factory: Any, run_operator: Any,
                                                       eventually: Any) -> None:
    """More Queues on one broker than it serves connections (each its own token): all Ready.
    A connection pool per Queue's client held one connection each, and at 1,000 Queues on
    the bench's one broker (--max-connections 1000) the last twenty were refused for good."""
    served, count = 10, 16  # the operator's calls in flight at once: far fewer than 10
    broker = broker_factory("--max-connections", str(served))
    run_operator(broker_url=broker.url)
    names = {f"shared{i:02d}" for i in range(count)}
    for name in sorted(names):
        apply(control_plane, namespace, cr("Queue", name, {}))

    def ready() -> set[str]:
        rows = table(control_plane, namespace, "queues")
        return {n for n in names if rows.get(n, {}).get("READY") == "True"}
    eventually(lambda: ready() == names, f"all {count} Queues Ready on a broker serving "
               f"{served} connections", 180)
    assert len(broker_queues(broker.url)) >= count


def sample(url: str, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample of a server's /metrics (0 while it has none)."""
    with urllib.request.urlopen(f"{url}/metrics") as response:
        text = response.read().decode()
    return next((s.value for f in text_string_to_metric_families(text) for s in f.samples
                 if s.name == name and s.labels == (labels or {})), 0.0)


def store_writes(url: str) -> float:
    """Requests the broker made durable so far (its ferry_store_writes_total)."""
    return sample(url, "ferry_store_writes_total")


def test_an_idle_queue_costs_its_broker_no_write(control_plane: Any, namespace: str,
                                                broker: Any, run_operator: Any,
                                                eventually: Any) -> None:
    """Timer passes read a Ready Queue's stats and PUT it only when it is missing or differs:
    a PUT every pass was a write the broker made durable (100 fsynced writes a second for
    1,000 Queues). A queue deleted behind the operator's back is still put back."""
    operator = run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("Queue", "orders", {}))
    eventually(lambda: reconciled(control_plane, namespace, "queue", "orders"), "orders Ready")
    before = store_writes(broker.url)

    def passes() -> float:
        return sample(operator.metrics_url, "ferry_operator_reconciles_total",
                      {"kind": "Queue", "outcome": "ready"})
    counted = passes()
    # The window is passes made, not seconds: a loaded machine's 7 s may hold none.
    eventually(lambda: passes() >= counted + 5, "five more passes over the Ready Queue", 120)
    assert store_writes(broker.url) == before
    on_broker(broker.url, lambda c: c.delete_queue("orders"))
    eventually(lambda: "orders" in broker_queues(broker.url), "the queue put back")


def test_deleted_queues_and_groups_leave_nothing_in_the_operators_memory(
        control_plane: Any, namespace: str, broker: Any, run_operator: Any,
        eventually: Any) -> None:
    """A long-running operator sees Queues come and go: each one's token (kept in memory)
    and each autoscaled group's figures on /metrics must go with it. The tokens stayed,
    and the finalizer's own read put a deleted Queue's token back."""
    operator = run_operator(broker_url=broker.url)
    names = ["orders", "invoices"]
    for name in names:
        apply(control_plane, namespace, cr("Queue", name, {}))
        apply(control_plane, namespace, cr("ConsumerGroup", f"{name}-workers", {
            "queue": name, "autoscaling": {"target": {"name": f"{name}-workers"},
                                           "maxReplicas": 3}}))
        # The target's replicas are what the group's figures report (no pod need run).
        control_plane.kubectl("create", "deployment", f"{name}-workers", "-n", namespace,
                              "--image=registry.k8s.io/pause:3.10")

    def tokens() -> float:
        return sample(operator.metrics_url, "ferry_operator_cached_tokens")

    def scaled(group: str) -> bool:
        with urllib.request.urlopen(f"{operator.metrics_url}/metrics") as response:
            text = response.read().decode()
        return any(s.labels.get("group") == group
                   for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name.startswith("ferry_operator_consumergroup_"))
    for name in names:
        eventually(lambda n=name: reconciled(control_plane, namespace, "queue", n),
                   f"{name} Ready")
        eventually(lambda n=name: scaled(f"{n}-workers"), f"{name}-workers on /metrics")
    assert tokens() == len(names)
    for name in names:
        control_plane.kubectl("delete", "-n", namespace, "cg", f"{name}-workers",
                              "--timeout=120s")
        control_plane.kubectl("delete", "-n", namespace, "queue", name, "--timeout=120s")
    eventually(lambda: tokens() == 0, "no token held for the deleted Queues")
    assert not any(scaled(f"{name}-workers") for name in names)
