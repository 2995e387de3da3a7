"""Drain-first scale-in: the operator keeps each consumer pod's pod-deletion-cost equal to
the leases its consumers hold, so kube-controller-manager's ReplicaSet controller removes
idle consumers first when the workload shrinks.

No kubelet here: the Deployment's pods exist (Pending) and never run, so the test itself
plays their consumers, named after the pods as the clients' default `<hostname>-<pid>` is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fixtures.broker_process import BrokerProcess
from operating import apply, cr, on_broker, publish, workload

pytestmark = [pytest.mark.envtest, pytest.mark.scalein]
QUEUE, CONSUMERS = "jobs", "workers"
COST = "controller.kubernetes.io/pod-deletion-cost"


def _pods(plane: Any, namespace: str) -> dict[str, dict[str, Any]]:
    found = plane.kubectl_json("get", "pods", "-n", namespace, "-l", f"app={CONSUMERS}")
    return {p["metadata"]["name"]: p for p in found["items"]
            if not p["metadata"].get("deletionTimestamp")}


def test_a_scale_in_removes_idle_consumers_first(
        control_plane: Any, namespace: str, broker: BrokerProcess, run_operator: Any,
        eventually: Callable[..., Any]) -> None:
    run_operator(broker_url=broker.url)
    control_plane.kubectl("apply", "-f", "-",
                          input=json.dumps(workload(namespace, CONSUMERS, replicas=4)))
    apply(control_plane, namespace, cr("Queue", QUEUE, {}))
    apply(control_plane, namespace, cr("ConsumerGroup", CONSUMERS, {
        "queue": QUEUE, "visibilityTimeout": "10m",
        "autoscaling": {"provider": "Ferry", "target": {"name": CONSUMERS},
                        "minReplicas": 1, "maxReplicas": 4}}))
    pods = sorted(eventually(lambda: _pods(control_plane, namespace)
                             if len(_pods(control_plane, namespace)) == 4 else None,
                             "the Deployment's 4 pods exist"))
    eventually(lambda: (control_plane.kubectl_json("get", "cg", CONSUMERS, "-n", namespace)
                        .get("status") or {}).get("endpoint"), "the group is on its broker")

    # Three consumers hold 3, 2 and 1 leases; the fourth pod's consumer holds none.
    publish(broker.url, QUEUE, 6)
    held = dict(zip(pods, (3, 2, 1, 0), strict=True))
    for pod, n in held.items():
        if n:
            got = on_broker(broker.url, lambda c, pod=pod, n=n: c.receive(
                QUEUE, CONSUMERS, f"{pod}-4711", max=n))
            assert len(got) == n

    def costs() -> dict[str, str | None]:
        return {name: (p["metadata"].get("annotations") or {}).get(COST)
                for name, p in _pods(control_plane, namespace).items()}

    want = {pod: str(n) for pod, n in held.items()}
    eventually(lambda: costs() == want, f"each pod's deletion cost is its leases: {want}")

    # Scale in to 1: the ReplicaSet controller removes the cheapest pods, idle first.
    control_plane.kubectl("scale", "deployment", CONSUMERS, "-n", namespace, "--replicas=1")
    busiest = pods[0]
    eventually(lambda: list(_pods(control_plane, namespace)) == [busiest],
               "only the consumer holding the most leases is left")
