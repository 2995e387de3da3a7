"""A replicated Queue on PostgreSQL (spec.replicas, spec.storage.engine: postgres): its
children on a real API server, its status, and the CEL rules that keep it coherent."""

from __future__ import annotations

from typing import Any

import pytest
from operating import apply, cr, get, table

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
