"""A replicated Queue on PostgreSQL (spec.replicas, spec.storage.engine: postgres): its
children on a real API server, its status, the CEL rules that keep it coherent, and the
operator rolling a changed spec through its broker pods (run by the process kubelet)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from kubernetes import client, config, watch
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


def _rolled_events(plane: Any, namespace: str) -> list[str]:
    out = plane.kubectl("get", "events", "-n", namespace, "-o", "json",
                        "--field-selector", "reason=Rolled").stdout
    items = sorted(json.loads(out)["items"],
                   key=lambda e: e.get("eventTime") or e.get("firstTimestamp") or "")
    return [e["message"] for e in items]


class Replicated(NamedTuple):
    leader: str  # the pod leading at first
    operator: Any  # the operator serving it (fixtures/operators.py)


def _down(pod: dict[str, Any]) -> bool:
    """Going, or not started yet (a standby is never Ready: started is what it can show)."""
    containers = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(pod["metadata"].get("deletionTimestamp")) or not containers or not all(
        c.get("started") for c in containers)


class BrokerPods:
    """Watches the broker pods (a watch, not polling: no state is missed) and keeps every
    moment's set of broker pods that were down (deleted, going, or not started)."""

    def __init__(self, plane: Any, namespace: str, names: set[str]) -> None:
        self.api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        self.namespace, self.names = namespace, names
        self.pods: dict[str, dict[str, Any]] = {}
        self.down: list[frozenset[str]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="broker pods", daemon=True)

    def _note(self) -> None:
        self.down.append(frozenset(
            n for n in self.names if n not in self.pods or _down(self.pods[n])))

    def _list(self, core: client.CoreV1Api) -> str:
        listed = json.loads(core.list_namespaced_pod(self.namespace,
                                                     _preload_content=False).data)
        self.pods = {p["metadata"]["name"]: p for p in listed["items"]
                     if p["metadata"]["name"] in self.names}
        self._note()
        return str(listed["metadata"]["resourceVersion"])

    def _watch(self) -> None:
        core = client.CoreV1Api(self.api)
        since = self._list(core)
        while not self.stopped.is_set():  # short streams, each going on where the last ended
            for event in watch.Watch().stream(core.list_namespaced_pod, self.namespace,
                                              resource_version=since, timeout_seconds=2,
                                              deserialize=False):
                pod = event["object"]
                if event["type"] == "ERROR":  # too old a version: list again
                    since = self._list(core)
                    break
                since = pod["metadata"]["resourceVersion"]
                name = pod["metadata"]["name"]
                if name not in self.names:
                    continue
                if event["type"] == "DELETED":
                    self.pods.pop(name, None)
                else:
                    self.pods[name] = pod
                self._note()

    def __enter__(self) -> BrokerPods:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)
        self.api.close()


@pytest.fixture
def replicated_queue(control_plane: Any, namespace: str, run_operator: Any,
                     process_kubelet: Any, postgres: str,
                     eventually: Any) -> Iterator[Replicated]:
    """Queue `orders` on two broker pods over the session's PostgreSQL, Ready: its leader."""
    node = process_kubelet()
    service = ThreadedService(free_port(), lambda: [
        port for pod in ("orders-broker-0", "orders-broker-1")
        for port in node.ports(pod, BROKER_PORT)]).start()
    try:
        control_plane.kubectl("create", "secret", "generic", "-n", namespace, "orders-db",
                              f"--from-literal=uri={postgres}")
        operator = run_operator(broker_url=service.url)
        apply(control_plane, namespace, cr("Queue", "orders", {"replicas": 2, "storage": PG}))
        def led() -> dict[str, Any] | None:
            q = get(control_plane, namespace, "queue", "orders")
            return q if q and (q.get("status") or {}).get("leader") else None

        queue = eventually(led, "a leader", timeout=180)
        yield Replicated(str(queue["status"]["leader"]), operator)
    finally:
        service.stop()


@pytest.mark.timeout(900)  # a liveness bound: two brokers start, then roll one by one
def test_a_changed_replicated_queue_rolls_its_standby_first_and_its_leader_last(
        control_plane: Any, namespace: str, replicated_queue: Replicated,
        eventually: Any) -> None:
    """... one pod at a time, even when the operator restarts mid-roll (the pod being
    rolled is recorded in the Queue's status, not in the operator's memory)."""
    leader, names = replicated_queue.leader, {"orders-broker-0", "orders-broker-1"}
    standby = next(n for n in sorted(names) if n != leader)
    watcher = BrokerPods(control_plane, namespace, names)
    with watcher:
        eventually(lambda: watcher.down and not watcher.down[-1], "both broker pods started",
                   timeout=120)
        apply(control_plane, namespace, cr("Queue", "orders", {
            "replicas": 2, "storage": PG,
            "podTemplate": {"metadata": {"annotations": {"example.com/rolled": "1"}}}}))
        # The standby's roll is recorded before its pod goes: restart the operator then.
        def recorded() -> dict[str, Any] | None:
            status = (get(control_plane, namespace, "queue", "orders") or {}).get("status")
            return (status or {}).get("rolling")

        assert eventually(recorded, "the standby's roll recorded", timeout=120)["pod"] == standby
        replicated_queue.operator.process.stop()
        replicated_queue.operator.restart()
        _rolled_to_the_end(control_plane, namespace, leader, standby, eventually)
    both = [down for down in watcher.down if len(down) > 1]
    assert not both, f"two broker pods down at once: {both[:3]}"
    assert any(down == {standby} for down in watcher.down)  # the watch saw the roll
    assert any(down == {leader} for down in watcher.down)
    eventually(lambda: recorded() is None, "the record gone with the roll's end", timeout=60)


def _rolled_to_the_end(control_plane: Any, namespace: str, leader: str, standby: str,
                       eventually: Any) -> None:
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
    # kopf posts an Event after the deletion it tells of, in the background: the roll can
    # be over (a quick takeover) before the leader's Event is in (failed so once).
    def to_the_leader() -> list[str] | None:
        found = _rolled_events(control_plane, namespace)
        return found if found and found[-1].startswith(f"deleted pod {leader}") else None

    events = eventually(to_the_leader, "the leader's Rolled Event", timeout=60)
    # The standby's deletions, then the leader's, never a standby's after the leader's. A
    # deletion may be told twice: the standby's made again by the restarted operator (if
    # the first one stopped between recording and deleting it), or an Event's POST retried
    # under load (a leader's Event twice, in a full run at load 20). That each pod went
    # down once, one at a time, the pod watch shows.
    told = [e.split(" to roll it")[0] for e in events]
    first_leader = told.index(f"deleted pod {leader} (the leader, last)")
    assert first_leader > 0 and set(told[:first_leader]) == {
        f"deleted pod {standby} (a standby)"}, events
    assert set(told[first_leader:]) == {f"deleted pod {leader} (the leader, last)"}, events
    # The standby, rolled first, took over when the leader went (pods keep their names, so
    # wait for the status to say so rather than read the one that ended the roll).
    eventually(lambda: (get(control_plane, namespace, "queue", "orders") or {}).get(
        "status", {}).get("leader") == standby, f"{standby} to lead", timeout=120)
    for name in ("orders-broker-0", "orders-broker-1"):
        pod = get(control_plane, namespace, "pod", name) or {}
        assert pod["metadata"]["annotations"]["example.com/rolled"] == "1"
