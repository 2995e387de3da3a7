"""The operator's cost to the API server, counted by the API server itself.

`apiserver_request_total` (the API server's /metrics) counts every request, whoever made it.
Each test counts one window with the operator running over idle objects and one with it
stopped (everything else, the controller-manager included, runs on in both), and divides
the difference by the number of objects: the operator's requests per idle object and
minute, its own fixed costs (watch renewals) spread over them. Timers run far faster here
than their defaults (stats every 1 s, resync every 3 s), so the figure bounds what the
defaults cost. A count, not a time: the window length only scales it.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from operating import apply, condition, cr, get

pytestmark = pytest.mark.envtest
WINDOW_S = 30.0
_SAMPLE = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$", re.MULTILINE)
_LABEL = re.compile(r'(verb|resource|subresource)="([^"]*)"')


def requests_served(plane: Any) -> Counter[str]:
    """Requests so far by verb and resource (what a failure names)."""
    metrics = plane.kubectl("get", "--raw", "/metrics").stdout
    out: Counter[str] = Counter()
    for labels, value in _SAMPLE.findall(metrics):
        parts = dict(_LABEL.findall(labels))
        name = "/".join(p for p in (parts.get("resource"), parts.get("subresource")) if p)
        out[f"{parts.get('verb')} {name}"] += int(float(value))
    return out


def ferry_events(plane: Any, namespace: str) -> int:
    """Events about Ferry's resources (the operator's own), each repeat counted."""
    found = plane.kubectl_json("get", "events", "-n", namespace)
    return sum(int(e.get("count") or 1) for e in found["items"]
               if e["involvedObject"].get("apiVersion", "").startswith("ferry.dev/"))


def window(plane: Any, namespace: str) -> Counter[str]:
    """Requests the API server served during WINDOW_S seconds. Events are counted from the
    Events themselves: the controller-manager's (an HPA without a metrics API warns every
    15 s, less and less as its event rate limit bites) would swamp the operator's."""
    before, events = requests_served(plane), ferry_events(plane, namespace)
    time.sleep(WINDOW_S)  # a measuring window, not synchronisation
    served = requests_served(plane) - before
    for name in [n for n in served if n.endswith(" events")]:
        del served[name]
    served["operator events"] = ferry_events(plane, namespace) - events
    return served


def quiet(plane: Any) -> bool:
    """No namespace is being deleted (an earlier test's teardown costs ~100 requests)."""
    found = plane.kubectl_json("get", "namespaces")
    return all(n.get("status", {}).get("phase") != "Terminating" for n in found["items"])


def per_object_minute(plane: Any, namespace: str, operator: Any, objects: int,
                      eventually: Any) -> float:
    eventually(lambda: quiet(plane), "no namespace is terminating", timeout=300)
    running = window(plane, namespace)
    operator.process.stop()
    eventually(lambda: quiet(plane), "no namespace is terminating", timeout=300)
    stopped = window(plane, namespace)
    figure = (running.total() - stopped.total()) / objects * 60 / WINDOW_S
    extra = (running - stopped).most_common(6)
    print(f"requests: {running.total()} with the operator, {stopped.total()} without, "
          f"{figure:.2f} per object and minute; most of the difference: {extra}")
    return figure


def all_ready(plane: Any, namespace: str, kind: str, names: list[str]) -> Callable[[], bool]:
    return lambda: all(condition(get(plane, namespace, kind, n), "Ready") == ("True", "Reconciled")
                       for n in names)


@pytest.mark.quarantine(reason="failed in the full envtest tier on 2026-11-30: other tests' "
                        "background requests share the API server's counters; issue 17")
def test_an_idle_managed_queue_costs_at_most_two_requests_a_minute(
        control_plane: Any, namespace: str, broker: Any, run_operator: Any,
        eventually: Any) -> None:
    operator = run_operator(broker_url=broker.url)
    names = [f"q{i}" for i in range(10)]
    for name in names:
        apply(control_plane, namespace, cr("Queue", name, {}))
    eventually(all_ready(control_plane, namespace, "queue", names), "every Queue is Ready")
    eventually(lambda: all(get(control_plane, namespace, "pdb", f"{n}-broker") for n in names),
               "every Queue has its children")
    assert per_object_minute(control_plane, namespace, operator, len(names), eventually) <= 2


@pytest.mark.quarantine(reason="measured 7.6-12 requests a minute per idle pipeline: "
                   "besides watch renewals, single-object GETs of TelemetryPipelines, "
                   "ConsumerGroups and Queues appear only while the operator runs, and "
                   "their source is not found yet (not the operator's own client)")
def test_an_idle_pipeline_costs_at_most_six_requests_a_minute(
        control_plane: Any, namespace: str, broker: Any, run_operator: Any,
        eventually: Any) -> None:
    operator = run_operator(broker_url=broker.url)
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
    assert per_object_minute(control_plane, namespace, operator, len(names), eventually) <= 6


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
