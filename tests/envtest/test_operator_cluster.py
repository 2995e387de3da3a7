"""The operator in a shared cluster: the broker's volume grows (never shrinks) and a
disruption budget that never blocks a drain, left to the admins when asked."""

from __future__ import annotations

import json
from typing import Any

import pytest
from operating import apply, condition, cr, events, get, reconciled

pytestmark = pytest.mark.envtest


def storage_class(plane: Any, name: str, expandable: bool) -> None:
    plane.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
        "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": expandable}))


def volume(plane: Any, name: str, class_name: str) -> None:
    """A PersistentVolume for the broker's claim to bind to (nothing provisions here)."""
    plane.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": class_name, "hostPath": {"path": f"/tmp/{name}"},
                 "persistentVolumeReclaimPolicy": "Retain"}}))


def claim(plane: Any, namespace: str, name: str) -> dict[str, Any] | None:
    return get(plane, namespace, "persistentvolumeclaim", name)


def test_storage_grows_without_restarting_the_broker(control_plane: Any, namespace: str,
                                                     broker: Any, run_operator: Any,
                                                     eventually: Any) -> None:
    expandable = f"grow-{namespace}"
    storage_class(control_plane, expandable, expandable=True)
    volume(control_plane, expandable, expandable)
    try:
        run_operator(broker_url=broker.url)
        apply(control_plane, namespace, cr("Queue", "orders", {
            "storage": {"size": "1Gi", "storageClassName": expandable}}))
        eventually(lambda: (c := claim(control_plane, namespace, "data-orders-broker-0"))
                   and c["status"].get("phase") == "Bound", "the broker's claim is bound")
        pod = eventually(lambda: get(control_plane, namespace, "pod", "orders-broker-0"),
                         "the broker pod exists")
        old = get(control_plane, namespace, "statefulset", "orders-broker")
        assert old is not None

        apply(control_plane, namespace, cr("Queue", "orders", {
            "storage": {"size": "3Gi", "storageClassName": expandable}}))
        eventually(lambda: claim(control_plane, namespace, "data-orders-broker-0")
                   ["spec"]["resources"]["requests"]["storage"] == "3Gi",
                   "the claim asks for the new size")

        def replaced() -> dict[str, Any] | None:
            sts = get(control_plane, namespace, "statefulset", "orders-broker")
            templates = (sts or {}).get("spec", {}).get("volumeClaimTemplates") or [{}]
            size = templates[0].get("spec", {}).get("resources", {}).get("requests", {})
            return sts if size.get("storage") == "3Gi" else None
        new = eventually(replaced, "the StatefulSet is replaced with the bigger template")
        assert new["metadata"]["uid"] != old["metadata"]["uid"]
        same = get(control_plane, namespace, "pod", "orders-broker-0")
        assert same is not None and same["metadata"]["uid"] == pod["metadata"]["uid"], \
            "the broker pod was kept running, not recreated"
        eventually(lambda: any(r["uid"] == new["metadata"]["uid"] for r in
                               get(control_plane, namespace, "pod", "orders-broker-0")
                               ["metadata"].get("ownerReferences") or []),
                   "the new StatefulSet adopts the running pod")
        eventually(lambda: any(r == "StorageExpanded" for _, r, _ in
                               events(control_plane, namespace, "orders")),
                   "a StorageExpanded Event on the Queue")
    finally:
        control_plane.kubectl("delete", "pv", expandable, "--wait=false", check=False)
        control_plane.kubectl("delete", "storageclass", expandable, check=False)


def test_a_class_that_cannot_expand_says_so(control_plane: Any, namespace: str, broker: Any,
                                            run_operator: Any, eventually: Any) -> None:
    fixed = f"fixed-{namespace}"
    storage_class(control_plane, fixed, expandable=False)
    try:
        run_operator(broker_url=broker.url)
        apply(control_plane, namespace, cr("Queue", "orders", {
            "storage": {"size": "1Gi", "storageClassName": fixed}}))
        eventually(lambda: get(control_plane, namespace, "statefulset", "orders-broker"),
                   "the broker StatefulSet exists")
        apply(control_plane, namespace, cr("Queue", "orders", {
            "storage": {"size": "2Gi", "storageClassName": fixed}}))
        eventually(lambda: condition(get(control_plane, namespace, "queue", "orders"),
                                     "Degraded") == ("True", "StorageNotExpandable"),
                   "Degraded: StorageNotExpandable")
        sts = get(control_plane, namespace, "statefulset", "orders-broker")
        assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"][  # type: ignore[index]
            "storage"] == "1Gi"
        message = next(c["message"] for c in get(control_plane, namespace, "queue", "orders")  # type: ignore[index]
                       ["status"]["conditions"] if c["type"] == "Degraded")
        assert f"StorageClass {fixed} does not allow" in message
    finally:
        control_plane.kubectl("delete", "storageclass", fixed, check=False)


def test_disruption_budget_never_blocks_a_drain_and_can_be_left_to_admins(
        control_plane: Any, namespace: str, broker: Any, run_operator: Any,
        eventually: Any) -> None:
    run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("Queue", "orders", {}))
    budget = eventually(lambda: get(control_plane, namespace, "pdb", "orders-broker"),
                        "the broker's budget exists")
    assert budget["spec"]["maxUnavailable"] == 1 and "minAvailable" not in budget["spec"]
    # Managed: an admin's change is put back.
    control_plane.kubectl("patch", "-n", namespace, "pdb", "orders-broker", "--type=merge",
                          "-p", '{"spec": {"maxUnavailable": 0}}')
    eventually(lambda: get(control_plane, namespace, "pdb", "orders-broker")["spec"]
               ["maxUnavailable"] == 1, "a managed budget is put back")

    # Unmanaged: the admin's change stays, and so does a deletion.
    apply(control_plane, namespace, cr("Queue", "orders", {
        "broker": {"disruptionBudget": "Unmanaged"}}))
    eventually(lambda: reconciled(control_plane, namespace, "queue", "orders"),
               "the queue is Ready")
    control_plane.kubectl("patch", "-n", namespace, "pdb", "orders-broker", "--type=merge",
                          "-p", '{"spec": {"maxUnavailable": 0}}')
    # A later change the operator must apply: once it shows, the operator has reconciled
    # (several times over, every 3 s) since the admin's edit.
    apply(control_plane, namespace, cr("Queue", "orders", {
        "maxDeliveries": 9, "broker": {"disruptionBudget": "Unmanaged"}}))

    def applied(deliveries: int) -> bool:
        config = get(control_plane, namespace, "configmap", "orders-broker") or {}
        settings = json.loads(config.get("data", {}).get("queue.json", "{}"))
        return bool(settings.get("settings", {}).get("max_deliveries") == deliveries)
    eventually(lambda: applied(9), "the operator applied the later change")
    assert get(control_plane, namespace, "pdb", "orders-broker")["spec"]["maxUnavailable"] == 0  # type: ignore[index]
    control_plane.kubectl("delete", "-n", namespace, "pdb", "orders-broker")
    apply(control_plane, namespace, cr("Queue", "orders", {
        "maxDeliveries": 4, "broker": {"disruptionBudget": "Unmanaged"}}))
    eventually(lambda: applied(4), "the operator applied the next change")
    assert get(control_plane, namespace, "pdb", "orders-broker") is None
