"""The envtest plane is a real Kubernetes: its controllers act and its API server validates."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeplane import ControlPlane

pytestmark = pytest.mark.envtest

LABELS = {"app": "web"}


def _deployment(name: str, replicas: int, selector: dict[str, str]) -> client.V1Deployment:
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=selector),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=LABELS),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx")]),
            ),
        ),
    )


def test_deployment_gets_its_replicaset_and_pods(
    kube_api: client.ApiClient, namespace: str, eventually: Callable[..., Any]
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    deployment = apps.create_namespaced_deployment(namespace, _deployment("web", 2, LABELS))

    def owned_replicaset() -> client.V1ReplicaSet | None:
        for rs in apps.list_namespaced_replica_set(namespace).items:
            owners = rs.metadata.owner_references or []
            if any(ref.uid == deployment.metadata.uid for ref in owners):
                return rs
        return None

    replicaset = eventually(owned_replicaset, "the deployment controller creates a ReplicaSet")
    assert replicaset.spec.replicas == 2

    def owned_pods() -> list[client.V1Pod] | None:
        pods = [p for p in core.list_namespaced_pod(namespace).items
                if any(r.uid == replicaset.metadata.uid for r in p.metadata.owner_references or [])]
        return pods if len(pods) == 2 else None

    pods = eventually(owned_pods, "the replicaset controller creates 2 Pods")
    assert all(LABELS.items() <= pod.metadata.labels.items() for pod in pods)


def test_deleting_an_owner_garbage_collects_what_it_owns(
    kube_api: client.ApiClient, namespace: str, eventually: Callable[..., Any]
) -> None:
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    reference = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner",
                                        uid=owner.metadata.uid)
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="owned", owner_references=[reference]),
        string_data={"k": "v"}))
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="bystander"), string_data={"k": "v"}))

    core.delete_namespaced_config_map("owner", namespace)

    def owned_gone() -> bool:
        try:
            core.read_namespaced_secret("owned", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    eventually(owned_gone, "the garbage collector deletes the owned Secret")
    assert core.read_namespaced_secret("bystander", namespace).metadata.name == "bystander"


def test_invalid_objects_are_rejected_by_the_api_server(
    kube_api: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(kube_api)
    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_deployment(namespace, _deployment("bad", 1, {"app": "other"}))
    assert caught.value.status == 422
    body = json.loads(caught.value.body)
    assert body["reason"] == "Invalid"
    assert "spec.template.metadata.labels" in {c["field"] for c in body["details"]["causes"]}
    assert apps.list_namespaced_deployment(namespace).items == []


def test_kubectl_reports_rejections_with_a_nonzero_exit(
    control_plane: ControlPlane, namespace: str
) -> None:
    manifest = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "Not_A_Valid_Name", "namespace": namespace}}
    result = control_plane.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0
    assert "Invalid value" in result.stderr


def test_statefulset_controller_creates_ordered_pods(
    kube_api: client.ApiClient, namespace: str, eventually: Callable[..., Any]
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    template = _deployment("db", 1, LABELS).spec.template
    apps.create_namespaced_stateful_set(namespace, client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name="db"),
        spec=client.V1StatefulSetSpec(service_name="db", replicas=1, template=template,
                                      selector=client.V1LabelSelector(match_labels=LABELS))))

    def first_pod() -> client.V1Pod | None:
        pods = {p.metadata.name: p for p in core.list_namespaced_pod(namespace).items}
        return pods.get("db-0")

    pod = eventually(first_pod, "the statefulset controller creates Pod db-0")
    assert pod.metadata.owner_references[0].kind == "StatefulSet"


def test_hpa_controller_evaluates_autoscalers(
    kube_api: client.ApiClient, namespace: str, eventually: Callable[..., Any]
) -> None:
    apps = client.AppsV1Api(kube_api)
    autoscaling = client.AutoscalingV2Api(kube_api)
    apps.create_namespaced_deployment(namespace, _deployment("worker", 1, LABELS))
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "worker"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"},
            "minReplicas": 1, "maxReplicas": 3,
            "metrics": [{"type": "External", "external": {
                "metric": {"name": "no_such_metric"},
                "target": {"type": "AverageValue", "averageValue": "10"}}}],
        },
    })

    def conditions() -> dict[str, str] | None:
        hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("worker", namespace)
        found = {c.type: c.reason for c in hpa.status.conditions or []}
        return found if "ScalingActive" in found else None

    # No external metrics API is registered, so the controller reports exactly that.
    assert eventually(conditions, "the HPA controller sets conditions")["ScalingActive"] == (
        "FailedGetExternalMetric")


def test_deleted_namespaces_are_emptied_and_removed(
    kube_api: client.ApiClient, eventually: Callable[..., Any]
) -> None:
    core = client.CoreV1Api(kube_api)
    name = f"doomed-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(name, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="content")))
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as error:
            return error.status == 404
        return False

    eventually(gone, f"the namespace controller finalizes namespace {name}")
