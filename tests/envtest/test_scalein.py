"""Drain-first scale-in: the operator keeps each consumer pod's pod-deletion-cost equal to
the leases its consumers hold, so kube-controller-manager's ReplicaSet controller removes
idle consumers first when the workload shrinks; a consumer told to stop (SIGTERM) takes no
new leases and finishes the ones it holds, so the scale-in redelivers nothing.

The first test has no kubelet: the Deployment's pods exist (Pending) and never run, so the
test itself plays their consumers, named after the pods as the clients' default
`<hostname>-<pid>` is. The second runs real collectors through the process kubelet, which
stops a deleted pod's process as a kubelet does (SIGTERM, then SIGKILL after the grace).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures.broker_process import BrokerProcess
from operating import (
    apply,
    collectors,
    cr,
    on_broker,
    publish,
    reconciled,
    telemetry_rows,
    workload,
)
from testsupport.repeating import repeating

from ferry.broker.models import GroupStats

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
    eventually(lambda: reconciled(control_plane, namespace, "cg", CONSUMERS),
               "the group is on its broker")

    # Three consumers hold 3, 2 and 1 leases; the fourth pod's consumer holds none.
    publish(broker.url, QUEUE, 6)
    held = dict(zip(pods, (3, 2, 1, 0), strict=True))
    for pod, n in held.items():
        if n:
            got = on_broker(broker.url, lambda c, pod=pod, n=n: c.receive(
                QUEUE, CONSUMERS, f"{pod}-4711", max=n))
            assert len(got) == n

    want = {pod: str(n) for pod, n in held.items()}
    eventually(lambda: _costs(control_plane, namespace) == want,
               f"each pod's deletion cost is its leases: {want}")

    # Scale in to 1: the ReplicaSet controller removes the cheapest pods, idle first.
    control_plane.kubectl("scale", "deployment", CONSUMERS, "-n", namespace, "--replicas=1")
    busiest = pods[0]
    eventually(lambda: list(_pods(control_plane, namespace)) == [busiest],
               "only the consumer holding the most leases is left")


def _stopped_counts(log: Path) -> dict[str, int]:
    """The counts a collector logs when it stops (its last words before exit 0)."""
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("{") and json.loads(line).get("msg") == "stopped":
            record = json.loads(line)
            return {k: int(record[k]) for k in ("stored", "duplicate", "redelivered")}
    raise AssertionError(f"{log.name} has no 'stopped' line:\n{log.read_text()[-2000:]}")


def _collectors_holding(control_plane: Any, namespace: str, broker: BrokerProcess,
                        run_operator: Any, process_kubelet: Any, eventually: Callable[..., Any],
                        **options: Any) -> Callable[[], GroupStats]:
    """4 real collector pods (process kubelet) subscribed to a Ferry-scaled group: its
    stats, read from the broker."""
    run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("Queue", QUEUE, {}))
    apply(control_plane, namespace, cr("ConsumerGroup", CONSUMERS, {
        "queue": QUEUE, "visibilityTimeout": "10m",
        "autoscaling": {"provider": "Ferry", "target": {"name": CONSUMERS},
                        "minReplicas": 1, "maxReplicas": 4}}))
    eventually(lambda: reconciled(control_plane, namespace, "cg", CONSUMERS),
               "the group is on its broker")
    process_kubelet()
    deployment = collectors(namespace, CONSUMERS, broker.url, QUEUE, replicas=4, hold=True,
                            **options)
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(deployment))

    def stats() -> GroupStats:
        return on_broker(broker.url, lambda c: c.group_stats(QUEUE, CONSUMERS))

    eventually(lambda: len(stats().consumers) == 4, "4 collectors subscribed", timeout=120)
    return stats


def _pods_left(plane: Any, namespace: str) -> list[str]:
    """Every consumer pod, terminating ones included: they go once their process ended."""
    found = plane.kubectl_json("get", "pods", "-n", namespace, "-l", f"app={CONSUMERS}")
    return sorted(p["metadata"]["name"] for p in found["items"])


def _costs(plane: Any, namespace: str) -> dict[str, str | None]:
    return {n: (p["metadata"].get("annotations") or {}).get(COST)
            for n, p in _pods(plane, namespace).items()}


def test_of_four_running_consumers_the_idle_one_goes_first_and_nothing_is_redelivered(
        control_plane: Any, namespace: str, broker: BrokerProcess, run_operator: Any,
        process_kubelet: Any, tmp_path: Path, eventually: Callable[..., Any]) -> None:
    """4 collectors taking one lease each at most, 3 messages: 3 hold one, the fourth none.
    Scaled to 3, the idle one goes; scaled to 1, the two busy ones removed store and ack
    what they hold as they stop. 0 redeliveries."""
    stats = _collectors_holding(control_plane, namespace, broker, run_operator,
                                process_kubelet, eventually, max_in_flight=1)
    on_broker(broker.url, lambda c: c.publish(QUEUE, telemetry_rows(0, 3)))
    eventually(lambda: stats().in_flight == 3, "3 collectors hold one message each")
    held = {c.name: c.in_flight for c in stats().consumers}
    want = {name: str(held.get(name, 0)) for name in _pods(control_plane, namespace)}
    assert sorted(want.values()) == ["0", "1", "1", "1"], held
    (idle,) = (name for name, n in want.items() if n == "0")
    eventually(lambda: _costs(control_plane, namespace) == want,
               f"each pod's deletion cost is its leases: {want}")

    control_plane.kubectl("scale", "deployment", CONSUMERS, "-n", namespace, "--replicas=3")
    eventually(lambda: len(_pods_left(control_plane, namespace)) == 3, "one pod gone",
               timeout=120)
    assert idle not in _pods_left(control_plane, namespace), "the idle consumer went first"
    control_plane.kubectl("scale", "deployment", CONSUMERS, "-n", namespace, "--replicas=1")
    eventually(lambda: stats().acked_total == 2 and len(_pods_left(control_plane, namespace))
               == 1, "the two busy consumers removed stored and acked theirs", timeout=120)
    control_plane.kubectl("scale", "deployment", CONSUMERS, "-n", namespace, "--replicas=0")
    eventually(lambda: stats().acked_total == 3 and stats().lag == 0, "all 3 acked",
               timeout=120)
    eventually(lambda: not _pods_left(control_plane, namespace), "the last process ended",
               timeout=120)
    counts = {log.stem: _stopped_counts(log)
              for log in sorted((tmp_path / "pods").glob(f"{CONSUMERS}-*.log"))}
    print(f"scale-in 4 -> 3 -> 1 -> 0 with 3 leases held: per pod {counts}")
    assert sum(c["stored"] for c in counts.values()) == 3
    assert sum(c["redelivered"] + c["duplicate"] for c in counts.values()) == 0


def test_consumers_told_to_stop_finish_their_leases_so_a_scale_in_redelivers_nothing(
        control_plane: Any, namespace: str, broker: BrokerProcess, run_operator: Any,
        process_kubelet: Any, tmp_path: Path, eventually: Callable[..., Any]) -> None:
    """4 collectors holding leases, scaled to 1 while messages keep coming: the removed pods
    get SIGTERM, take no new leases, store and ack what they hold; the survivor gets the
    rest. Every message is stored once and none is delivered twice."""
    stats = _collectors_holding(control_plane, namespace, broker, run_operator,
                                process_kubelet, eventually)
    sent = 0
    for _ in range(4):  # in waves, so the broker spreads them over the collectors
        on_broker(broker.url, lambda c, first=sent: c.publish(QUEUE, telemetry_rows(first, 10)))
        sent += 10
    eventually(lambda: stats().in_flight == sent, f"the collectors hold all {sent}")
    held = {c.name: c.in_flight for c in stats().consumers}
    pods = {name: str(held.get(name, 0)) for name in _pods(control_plane, namespace)}
    eventually(lambda: _costs(control_plane, namespace) == pods,
               f"each pod's deletion cost is its leases: {pods}")

    # Messages keep coming while three pods stop: none of them may take one and hand it back.
    def more() -> None:
        nonlocal sent
        on_broker(broker.url, lambda c, first=sent: c.publish(QUEUE, telemetry_rows(first, 5)))
        sent += 5

    def pods_left() -> int:
        return len(_pods_left(control_plane, namespace))

    with repeating(more, 0.05, "publishing during the scale-in"):
        control_plane.kubectl("scale", "deployment", CONSUMERS, "-n", namespace,
                              "--replicas=1")
        eventually(lambda: pods_left() == 1, "the three removed pods are gone", timeout=120)
    survivor = next(iter(_pods(control_plane, namespace)))
    assert int(pods[survivor]) == max(int(n) for n in pods.values()), (survivor, pods)

    # The survivor holds the rest; scaling to 0 drains it too, and every count is in.
    control_plane.kubectl("scale", "deployment", CONSUMERS, "-n", namespace, "--replicas=0")
    eventually(lambda: stats().acked_total == sent and stats().lag == 0,
               f"all {sent} messages acked", timeout=120)
    eventually(lambda: pods_left() == 0, "the survivor's process ended", timeout=120)
    logs = sorted((tmp_path / "pods").glob(f"{CONSUMERS}-*.log"))
    counts = {log.stem: _stopped_counts(log) for log in logs}
    print(f"scale-in 4 -> 1 -> 0: {sent} messages, per pod {counts}")
    assert len(counts) == 4
    assert sum(c["stored"] for c in counts.values()) == sent
    assert sum(c["redelivered"] + c["duplicate"] for c in counts.values()) == 0
