"""The two API calls the operator's roll of a replicated Queue rests on, against a real API
server: a deletion with a uid precondition deletes that object and never a same-named
successor, and a merge patch of a Queue's status subresource keeps status.rolling (the CRD
schema knows it) and clears it with null."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from operating import apply, cr, get

from ferry.operator.clients.kube import KubeClient, load_credentials
from ferry.operator.identity import API_VERSION

pytestmark = pytest.mark.envtest


def test_a_deletion_with_a_uid_spares_a_successor_of_the_same_name(
        control_plane: Any, namespace: str) -> None:
    def config_map() -> dict[str, Any]:
        apply(control_plane, namespace, {"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": "broker-0"}})
        found = get(control_plane, namespace, "configmap", "broker-0")
        assert found is not None
        return found

    first = config_map()["metadata"]["uid"]
    control_plane.kubectl("delete", "-n", namespace, "configmap", "broker-0")
    successor = config_map()["metadata"]["uid"]

    async def delete(uid: str) -> bool:
        kube = KubeClient(load_credentials(str(control_plane.kubeconfig)))
        try:
            return await kube.delete("v1", "ConfigMap", namespace, "broker-0", uid=uid)
        finally:
            await kube.close()

    assert asyncio.run(delete(first)) is False  # the precondition refused it
    assert get(control_plane, namespace, "configmap", "broker-0") is not None
    assert asyncio.run(delete(successor)) is True
    assert get(control_plane, namespace, "configmap", "broker-0") is None


def test_status_rolling_is_kept_by_the_schema_and_cleared_with_null(
        control_plane: Any, ferry_crds: None, namespace: str) -> None:
    apply(control_plane, namespace, cr("Queue", "orders", {}))
    record = {"pod": "orders-broker-1", "uid": "u1", "deletedAt": "2026-11-30T12:00:00Z"}

    async def patch(rolling: dict[str, str] | None) -> Any:
        kube = KubeClient(load_credentials(str(control_plane.kubeconfig)))
        try:
            return await kube.patch(API_VERSION, "Queue", namespace, "orders",
                                    {"status": {"rolling": rolling}}, subresource="status")
        finally:
            await kube.close()

    asyncio.run(patch(record))
    queue = get(control_plane, namespace, "queue", "orders") or {}
    assert queue["status"]["rolling"] == record, json.dumps(queue.get("status"))
    assert queue["metadata"]["generation"] == 1  # status only: spec untouched
    asyncio.run(patch(None))
    assert "rolling" not in (get(control_plane, namespace, "queue", "orders") or {}).get(
        "status", {})
