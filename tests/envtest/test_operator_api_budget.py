"""The operator's cost to the API server, counted by the API server itself.

The operator runs as its own ServiceAccount, and a FlowSchema (API Priority and Fairness)
sends that account's requests, and only them, to a flow of their own: the API server's
`apiserver_flowcontrol_dispatched_requests_total` for that flow counts every request the
operator made (watches, GETs, applies, status patches, Events), whoever else is busy. An
earlier version subtracted a window with the operator stopped from one with it running,
which charged the operator with everything else that differed between the two windows:
the garbage collector, which GETs an owner (a Queue, a TelemetryPipeline) every few
seconds until its own watch on a newly installed kind catches up, and other tests'
background requests. Timers run far faster here than their defaults (stats every 1 s,
resync every 3 s), so the figure bounds what the defaults cost. A count, not a time: the
window length only scales it.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from operating import (
    OPERATOR_ACCOUNT,
    apply,
    cr,
    get,
    reconciled,
    service_account_kubeconfig,
)

pytestmark = pytest.mark.envtest
WINDOW_S = 30.0
FLOW = "ferry-operator-budget"
_DISPATCHED = re.compile(r'^apiserver_flowcontrol_dispatched_requests_total\{([^}]*)\} '
                         r'([0-9.e+]+)$', re.MULTILINE)


@pytest.fixture
def counted_operator(control_plane: Any, run_operator: Any, broker: Any,
                     tmp_path: Path) -> Iterator[Any]:
    """The operator as its ServiceAccount, its requests in a flow of their own."""
    namespace, account = OPERATOR_ACCOUNT
    kubeconfig = service_account_kubeconfig(control_plane, tmp_path)
    flow = {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
            "metadata": {"name": FLOW},
            "spec": {"matchingPrecedence": 100,
                     "priorityLevelConfiguration": {"name": "workload-high"},
                     "rules": [{"subjects": [{"kind": "ServiceAccount", "serviceAccount": {
                         "name": account, "namespace": namespace}}],
                         "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"],
                                            "resources": ["*"], "namespaces": ["*"],
                                            "clusterScope": True}],
                         "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}]}}
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(flow))
    try:
        yield run_operator(broker_url=broker.url, kubeconfig=kubeconfig)
    finally:
        control_plane.kubectl("delete", "flowschema", FLOW, "--ignore-not-found")


def operator_requests(plane: Any, flow: str = FLOW) -> int:
    """Requests the API server dispatched in the operator's flow (or another) so far."""
    metrics = plane.kubectl("get", "--raw", "/metrics").stdout
    return sum(int(float(value)) for labels, value in _DISPATCHED.findall(metrics)
               if f'flow_schema="{flow}"' in labels)


def per_object_minute(plane: Any, objects: int) -> float:
    before = operator_requests(plane)
    assert before > 0, "the operator's requests are not counted in its flow"
    time.sleep(WINDOW_S)  # a measuring window, not synchronisation
    made = operator_requests(plane) - before
    figure = made / objects * 60 / WINDOW_S
    print(f"the operator made {made} requests in {WINDOW_S:g} s: {figure:.2f} per object "
          "and minute")
    return figure


def all_ready(plane: Any, namespace: str, kind: str, names: list[str]) -> Callable[[], bool]:
    return lambda: all(reconciled(plane, namespace, kind, n) for n in names)


def test_an_idle_managed_queue_costs_at_most_two_requests_a_minute(
        control_plane: Any, namespace: str, counted_operator: Any, eventually: Any) -> None:
    names = [f"q{i}" for i in range(10)]
    make_ready_queues(control_plane, namespace, names, eventually)
    assert per_object_minute(control_plane, len(names)) <= 2


@contextlib.contextmanager
def flow_of_its_own(plane: Any, name: str, eventually: Any,
                    rules: list[dict[str, Any]]) -> Iterator[None]:
    """Some of the operator's requests (`rules`) in a flow of their own, counted apart: it
    precedes the fixture's. In force once the API server's flow control has taken it in."""
    _, account = OPERATOR_ACCOUNT
    flow = {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
            "metadata": {"name": name},
            "spec": {"matchingPrecedence": 50,
                     "priorityLevelConfiguration": {"name": "workload-high"},
                     "rules": [{"subjects": [{"kind": "ServiceAccount", "serviceAccount": {
                         "name": account, "namespace": OPERATOR_ACCOUNT[0]}}],
                         "resourceRules": rules}]}}
    plane.kubectl("apply", "-f", "-", input=json.dumps(flow))
    try:
        eventually(lambda: (plane.kubectl_json("get", "flowschema", name)
                            .get("status") or {}).get("conditions"), "the flow is in force")
        yield
    finally:
        plane.kubectl("delete", "flowschema", name, "--ignore-not-found")


def make_ready_queues(plane: Any, namespace: str, names: list[str], eventually: Any) -> None:
    for name in names:
        apply(plane, namespace, cr("Queue", name, {}))
    eventually(all_ready(plane, namespace, "queue", names), "every Queue is Ready")
    eventually(lambda: all(get(plane, namespace, "pdb", f"{n}-broker") for n in names),
               "every Queue has its children")


def test_new_queues_cost_no_read_of_what_they_are_about_to_create(
        control_plane: Any, namespace: str, counted_operator: Any, eventually: Any) -> None:
    """A new Queue's token Secret is created without a GET first, and its StatefulSet is not
    read before the operator applies it: of a new Queue's ~10 requests, those were two (a 404
    each), at 1,000 Queues created at once 2,000 requests. The operator's GETs of Secrets and
    StatefulSets go to a flow of their own, counted as above."""
    reads = f"{FLOW}-reads"
    with flow_of_its_own(control_plane, reads, eventually, [{
            "verbs": ["get"], "apiGroups": ["", "apps"], "resources": ["secrets", "statefulsets"],
            "namespaces": ["*"]}]):
        before = operator_requests(control_plane, reads)
        names = [f"q{i}" for i in range(5)]
        make_ready_queues(control_plane, namespace, names, eventually)
        assert operator_requests(control_plane, reads) - before == 0
        # ...and not because the flow counts nothing: a GET made as the operator counts.
        _, account = OPERATOR_ACCOUNT
        control_plane.kubectl(f"--as=system:serviceaccount:{OPERATOR_ACCOUNT[0]}:{account}",
                              "get", "secret", "-n", namespace, "q0-broker-token")
        assert operator_requests(control_plane, reads) - before >= 1
        assert all(get(control_plane, namespace, "secret", f"{n}-broker-token") for n in names)


def test_a_new_queue_is_patched_once_its_status_aside(
        control_plane: Any, namespace: str, counted_operator: Any, eventually: Any) -> None:
    """kopf's bookkeeping (the spec it handled, its handlers' progress) goes out with the
    pass's status PATCH: the Queue itself is PATCHed once, for the finalizer. In annotations
    it was a second PATCH of each new Queue (and a second watch event to every watcher)."""
    patches = f"{FLOW}-patches"
    with flow_of_its_own(control_plane, patches, eventually, [{
            "verbs": ["patch"], "apiGroups": ["ferry.dev"], "resources": ["queues"],
            "namespaces": ["*"]}]):
        before = operator_requests(control_plane, patches)
        names = [f"q{i}" for i in range(5)]
        make_ready_queues(control_plane, namespace, names, eventually)
        assert operator_requests(control_plane, patches) - before == len(names)
        queue = get(control_plane, namespace, "queue", "q0") or {}
        assert queue["metadata"]["finalizers"]
        assert json.loads(queue["status"]["kopf"]["last-handled-configuration"])["spec"] \
            == queue["spec"]


def test_an_idle_pipeline_costs_at_most_six_requests_a_minute(
        control_plane: Any, namespace: str, counted_operator: Any, eventually: Any) -> None:
    names = [f"p{i}" for i in range(5)]
    for name in names:
        apply(control_plane, namespace, cr("TelemetryPipeline", name, {
            "streamer": {"source": {"path": "/data/sample.csv"}},
            "collector": {"minReplicas": 1, "maxReplicas": 2}}))
    eventually(all_ready(control_plane, namespace, "cg", [f"{n}-collectors" for n in names]),
               "every pipeline's group is Ready")
    eventually(lambda: all(((get(control_plane, namespace, "tp", n) or {}).get("status") or {})
                           .get("readyChildren") == "3/6" for n in names),
               "every pipeline reports its children")
    assert per_object_minute(control_plane, len(names)) <= 6


def test_drift_is_repaired_from_watch_events_not_polling(
        control_plane: Any, namespace: str, broker: Any, run_operator: Any,
        eventually: Any) -> None:
    """With timers an hour apart, only the watch on the children can notice the change."""
    run_operator("--resync-seconds", "3600", "--stats-seconds", "3600", broker_url=broker.url)
    apply(control_plane, namespace, cr("Queue", "orders", {}))
    service = eventually(lambda: get(control_plane, namespace, "service", "orders-broker"),
                         "the client Service exists")
    eventually(lambda: get(control_plane, namespace, "statefulset", "orders-broker"),
               "the StatefulSet exists")
    control_plane.kubectl("delete", "-n", namespace, "service", "orders-broker")
    control_plane.kubectl("scale", "-n", namespace, "statefulset", "orders-broker",
                          "--replicas=3")
    eventually(lambda: (s := get(control_plane, namespace, "service", "orders-broker"))
               and s["metadata"]["uid"] != service["metadata"]["uid"],
               "the deleted Service comes back", timeout=60)
    eventually(lambda: (get(control_plane, namespace, "statefulset", "orders-broker")
                        or {}).get("spec", {}).get("replicas") == 1,
               "the scaled StatefulSet is put back to 1 replica", timeout=60)
