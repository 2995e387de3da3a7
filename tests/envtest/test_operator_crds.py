"""The CRDs on a real API server: accepted, explained, defaulted, and bad CRs rejected by CEL."""

from __future__ import annotations

from typing import Any

import pytest
from operating import apply, cr

pytestmark = pytest.mark.envtest


def test_crds_are_established_and_explained(control_plane: Any, ferry_crds: None) -> None:
    for plural in ("queues", "consumergroups", "telemetrypipelines"):
        crd = control_plane.kubectl_json("get", "crd", f"{plural}.ferry.dev")
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
    explained = " ".join(control_plane.kubectl("explain", "queue.spec.deletionPolicy")
                         .stdout.split())
    assert "Retain leaves the broker data untouched" in explained
    names = control_plane.kubectl("api-resources", "--categories=ferry", "-o", "name").stdout
    assert set(names.split()) == {"queues.ferry.dev", "consumergroups.ferry.dev",
                                  "telemetrypipelines.ferry.dev"}


def test_defaults_come_from_the_schema(control_plane: Any, ferry_crds: None,
                                       namespace: str) -> None:
    apply(control_plane, namespace, cr("Queue", "plain", {}))
    spec = control_plane.kubectl_json("get", "-n", namespace, "queue", "plain")["spec"]
    assert (spec["retention"], spec["visibilityTimeout"], spec["deletionPolicy"],
            spec["storage"]["size"]) == ("168h", "30s", "Delete", "1Gi")


INVALID = [
    pytest.param(cr("ConsumerGroup", "g", {"queue": "q", "autoscaling": {
        "target": {"name": "w"}, "minReplicas": 5, "maxReplicas": 2}}),
        "autoscaling.minReplicas must not exceed autoscaling.maxReplicas", id="min-over-max"),
    pytest.param(cr("Queue", "q", {"storage": {"size": "0"}}),
                 "storage.size must be a quantity greater than zero", id="zero-size"),
    pytest.param(cr("Queue", "q", {"visibilityTimeout": "0s"}),
                 "visibilityTimeout must be greater than zero", id="zero-timeout"),
    pytest.param(cr("Queue", "q", {"dedupWindow": "169h"}),
                 "dedupWindow must be at most 168h", id="dedup-window-bound"),
    pytest.param(cr("ConsumerGroup", "g", {"queue": "q", "visibilityTimeout": "12h1s"}),
                 "visibilityTimeout must be at most 12h", id="lease-bound"),
    pytest.param(cr("Queue", "q", {"retention": "5 minutes"}),
                 "spec.retention", id="duration-pattern"),
    pytest.param(cr("ConsumerGroup", "g", {"queue": "q", "nackBackoff": {
        "initial": "10m", "max": "1s"}}),
        "nackBackoff.initial must not exceed nackBackoff.max", id="backoff"),
    pytest.param(cr("TelemetryPipeline", "t", {"streamer": {"source": {
        "path": "/x.csv", "configMap": {"name": "c", "key": "k"}}}}),
        "streamer.source needs exactly one of configMap or path", id="two-sources"),
    pytest.param(cr("TelemetryPipeline", "t", {"streamer": {"source": {"path": "/x"}},
                                               "collector": {"minReplicas": 9}}),
                 "collector.minReplicas must not exceed collector.maxReplicas",
                 id="collector-bounds"),
    pytest.param(cr("ConsumerGroup", "g", {"queue": "q", "filter": {}}),
                 "filter needs at least one condition", id="filter-empty"),
    pytest.param(cr("ConsumerGroup", "g", {"queue": "q", "filter": {
        "match": {f"h{i}": "v" for i in range(17)}}}),
        "spec.filter.match: Too many", id="filter-too-many"),
    pytest.param(cr("ConsumerGroup", "g", {"queue": "q", "filter": {
        "prefix": {"h" * 257: "v"}}}),
        "filter header names must be 1-256 characters", id="filter-long-name"),
    pytest.param(cr("ConsumerGroup", "g", {"queue": "q", "filter": {
        "match": {"type": "x" * 1025}}}),
        "spec.filter.match.type", id="filter-long-value"),
    pytest.param(cr("Queue", "q" * 46, {}), "metadata.name must be at most 45 characters",
                 id="queue-name-length"),
    pytest.param(cr("Queue", "orders.eu", {}), "no dots", id="queue-name-dot"),
    pytest.param(cr("Queue", "1orders", {}), "must start with a letter", id="queue-name-digit"),
    pytest.param(cr("ConsumerGroup", "g" * 64, {"queue": "q"}),
                 "metadata.name must be at most 63 characters", id="group-name-length"),
    pytest.param(cr("ConsumerGroup", "workers.eu", {"queue": "q"}), "no dots",
                 id="group-name-dot"),
    pytest.param(cr("TelemetryPipeline", "t" * 44, {"streamer": {"source": {"path": "/x"}}}),
                 "metadata.name must be at most 43 characters", id="pipeline-name-length"),
    pytest.param(cr("Queue", "q", {"podTemplate": {"spec": {"tolerations": [
        {"key": "k", "operator": "Maybe"}]}}}), "spec.podTemplate.spec.tolerations[0].operator",
        id="pod-template-schema"),
    pytest.param(cr("Queue", "q", {"podTemplate": {"metadata": {"labels": {
        "ferry.dev/queue": "other"}}}}), "podTemplate labels under ferry.dev/ are Ferry's own",
        id="pod-template-reserved-label"),
    pytest.param(cr("TelemetryPipeline", "t", {"streamer": {"source": {"path": "/x"}},
                                               "podTemplate": {"spec": {"affinity": {
                                                   "nodeAffinity": {"nope": {}}}}}}),
                 'unknown field "spec.podTemplate.spec.affinity.nodeAffinity.nope"',
                 id="pod-template-affinity-schema"),
    pytest.param(cr("TelemetryPipeline", "t", {"streamer": {"source": {"path": "/x"}},
                                               "collector": {"podTemplate": {"spec": {
                                                   "tolerations": [{"operator": "Maybe"}]}}}}),
                 "spec.collector.podTemplate.spec.tolerations[0].operator",
                 id="workload-pod-template-schema"),
    pytest.param(cr("TelemetryPipeline", "t", {"streamer": {
        "source": {"path": "/x"},
        "podTemplate": {"metadata": {"annotations": {"ferry.dev/config-hash": "x"}}}}}),
        "podTemplate annotations under ferry.dev/ are Ferry's own",
        id="workload-pod-template-reserved-annotation"),
    pytest.param(cr("TelemetryPipeline", "t", {"streamer": {"source": {"path": "/x"}},
                                               "api": {"podTemplate": {"spec": {
                                                   "securityContext": {"runAsUser": -1}}}}}),
                 "spec.api.podTemplate.spec.securityContext.runAsUser",
                 id="workload-pod-template-negative-uid"),
]


@pytest.mark.parametrize(("manifest", "message"), INVALID)
def test_invalid_resources_are_rejected_with_the_rule_message(
        control_plane: Any, ferry_crds: None, namespace: str, manifest: dict[str, Any],
        message: str) -> None:
    result = apply(control_plane, namespace, manifest, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    kind = manifest["kind"].lower()
    assert control_plane.kubectl("get", "-n", namespace, kind, manifest["metadata"]["name"],
                                 check=False).returncode != 0  # nothing was stored


@pytest.mark.parametrize(("kind", "spec", "change", "message"), [
    ("ConsumerGroup", {"queue": "a"}, {"queue": "b"}, "queue is immutable"),
    ("ConsumerGroup", {"queue": "a"}, {"queue": "a", "startAt": "Latest"},
     "startAt is immutable"),
    ("Queue", {"storage": {"size": "2Gi"}}, {"storage": {"size": "1Gi"}},
     "storage.size can grow but never shrink"),
    ("Queue", {}, {"storage": {"storageClassName": "fast"}},
     "storage.storageClassName is immutable"),
    ("Queue", {"broker": {"url": "http://a:1", "connectionSecret": {"name": "c"}}},
     {"broker": {"url": "http://b:1", "connectionSecret": {"name": "c"}}},
     "broker.url is immutable"),
])
def test_immutable_fields_cannot_change(control_plane: Any, ferry_crds: None, namespace: str,
                                        kind: str, spec: dict[str, Any], change: dict[str, Any],
                                        message: str) -> None:
    apply(control_plane, namespace, cr(kind, "fixed", spec))
    result = apply(control_plane, namespace, cr(kind, "fixed", change), check=False)
    assert result.returncode != 0 and message in result.stderr


def test_storage_can_grow(control_plane: Any, ferry_crds: None, namespace: str) -> None:
    apply(control_plane, namespace, cr("Queue", "grows", {"storage": {"size": "1Gi"}}))
    apply(control_plane, namespace, cr("Queue", "grows", {"storage": {"size": "3Gi"}}))
    stored = control_plane.kubectl_json("get", "-n", namespace, "queue", "grows")
    assert stored["spec"]["storage"]["size"] == "3Gi"


def test_a_full_pod_template_is_accepted_for_a_queue_and_each_pipeline_workload(
        control_plane: Any, ferry_crds: None, namespace: str) -> None:
    template = {
        "metadata": {"labels": {"team": "gpu"}, "annotations": {"cost": "42"}},
        "spec": {
            "nodeSelector": {"pool": "queues"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "q",
                             "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "pool", "operator": "In", "values": ["queues"]}]}]}},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 50, "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"team": "gpu"}}}}]}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                           "whenUnsatisfiable": "ScheduleAnyway"}],
            "priorityClassName": "high", "serviceAccountName": "brokers",
            "imagePullSecrets": [{"name": "mirror"}],
            "securityContext": {"fsGroup": 2000}}}
    apply(control_plane, namespace, cr("Queue", "placed", {"podTemplate": template}))
    stored = control_plane.kubectl_json("get", "-n", namespace, "queue", "placed")
    assert stored["spec"]["podTemplate"] == template
    workloads = {"streamer": {"source": {"path": "/x"}, "podTemplate": template},
                 "collector": {"podTemplate": template}, "api": {"podTemplate": template}}
    apply(control_plane, namespace, cr("TelemetryPipeline", "placed", workloads))
    stored = control_plane.kubectl_json("get", "-n", namespace, "tp", "placed")
    assert [stored["spec"][w]["podTemplate"] for w in workloads] == [template] * 3


def test_a_group_filter_is_accepted_as_written(control_plane: Any, ferry_crds: None,
                                               namespace: str) -> None:
    f = {"match": {"type": "order"}, "prefix": {"region": "eu-"}}
    apply(control_plane, namespace, cr("ConsumerGroup", "eu", {"queue": "q", "filter": f}))
    spec = control_plane.kubectl_json("get", "-n", namespace, "consumergroup", "eu")["spec"]
    assert spec["filter"] == f
