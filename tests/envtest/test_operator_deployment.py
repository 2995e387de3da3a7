"""How the operator is deployed: its ClusterRole is enough (run as the ServiceAccount, with
OwnerReferencesPermissionEnforcement on), it runs its own image for resources that name
none, and a second replica under peering is a hot standby that takes over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from operating import apply, cr, events, get, reconciled, service_account_kubeconfig

pytestmark = pytest.mark.envtest
PIPELINE = {"streamer": {"source": {"path": "/data/sample.csv"}}}


def test_the_cluster_role_is_enough(control_plane: Any, namespace: str, broker: Any,
                                    run_operator: Any, eventually: Any,
                                    tmp_path: Path) -> None:
    kubeconfig = service_account_kubeconfig(control_plane, tmp_path)
    operator = run_operator(broker_url=broker.url, kubeconfig=kubeconfig)
    apply(control_plane, namespace, cr("TelemetryPipeline", "gpu", PIPELINE))
    eventually(lambda: reconciled(control_plane, namespace, "cg", "gpu-collectors"),
               "the pipeline's group is Ready, reconciled by the ServiceAccount")
    eventually(lambda: (get(control_plane, namespace, "tp", "gpu") or {}).get("status", {})
               .get("readyChildren") == "3/6", "the pipeline's status is written")
    eventually(lambda: get(control_plane, namespace, "poddisruptionbudget", "gpu-broker"),
               "the child Queue's broker workload exists")
    assert any(r == "Created" for _, r, _ in events(control_plane, namespace, "gpu"))
    control_plane.kubectl("delete", "-n", namespace, "tp", "gpu", "--timeout=120s")
    eventually(lambda: get(control_plane, namespace, "queue", "gpu") is None,
               "the child Queue's finalizer ran and released it")
    log = operator.process.log.read_text()
    assert "403" not in log and "Forbidden" not in log and "forbidden" not in log


def test_a_second_replica_is_a_hot_standby(control_plane: Any, namespace: str, broker: Any,
                                           run_operator: Any, eventually: Any) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "ferry"}}))
    low = run_operator("--peering", "ferry", "--priority", "1", broker_url=broker.url)
    high = run_operator("--peering", "ferry", "--priority", "2", broker_url=broker.url)
    eventually(lambda: "Pausing operations in favour of" in low.process.log.read_text(),
               "the lower-priority replica steps back")
    apply(control_plane, namespace, cr("Queue", "orders", {"maxDeliveries": 3}))
    eventually(lambda: reconciled(control_plane, namespace, "queue", "orders"),
               "the active replica reconciles the Queue")
    high.process.stop()  # a graceful exit withdraws it from the peering at once
    eventually(lambda: "Resuming operations" in low.process.log.read_text(),
               "the standby resumes")
    apply(control_plane, namespace, cr("Queue", "orders", {"maxDeliveries": 7}))

    def applied() -> bool:
        config = get(control_plane, namespace, "configmap", "orders-broker") or {}
        queue = json.loads(config.get("data", {}).get("queue.json", "{}"))
        return bool(queue.get("settings", {}).get("max_deliveries") == 7)
    eventually(applied, "the former standby applies the change")


def test_brokers_run_the_operators_own_image(control_plane: Any, namespace: str, broker: Any,
                                             run_operator: Any, eventually: Any,
                                             tmp_path: Path) -> None:
    """The operator's pod says which image it runs (as a kustomize images: edit sets it);
    a Queue that names no image gets that one, a Queue that names one keeps it."""
    kubeconfig = service_account_kubeconfig(control_plane, tmp_path)
    pod = f"ferry-operator-{namespace}"
    control_plane.kubectl("apply", "-n", "ferry-system", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
        "spec": {"serviceAccountName": "ferry-operator", "containers": [
            {"name": "operator", "image": "registry.example.com/ferry:7.7.7"}]}}))
    try:
        run_operator(broker_url=broker.url, kubeconfig=kubeconfig,
                     env={"POD_NAMESPACE": "ferry-system", "POD_NAME": pod})
        apply(control_plane, namespace, cr("Queue", "plain", {}))
        apply(control_plane, namespace, cr("Queue", "pinned", {
            "broker": {"image": "mirror.example/ferry:1"}}))

        def image(queue: str) -> str | None:
            sts = get(control_plane, namespace, "statefulset", f"{queue}-broker")
            return sts["spec"]["template"]["spec"]["containers"][0]["image"] if sts else None
        eventually(lambda: image("plain") == "registry.example.com/ferry:7.7.7",
                   "the broker runs the operator's image")
        eventually(lambda: image("pinned") == "mirror.example/ferry:1",
                   "spec.broker.image overrides it")
        assert "image" not in get(control_plane, namespace, "queue", "plain")["spec"]["broker"]  # type: ignore[index]
    finally:
        control_plane.kubectl("delete", "-n", "ferry-system", "pod", pod, "--wait=false")
