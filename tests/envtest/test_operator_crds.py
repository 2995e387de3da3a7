"""The CRDs on a real API server: accepted, explained, defaulted, and bad CRs rejected by CEL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from operating import cr

pytestmark = pytest.mark.envtest


def apply(plane: Any, namespace: str, manifest: dict[str, Any], check: bool = True) -> Any:
    return plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest),
                         check=check)


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
    ("Queue", {}, {"storage": {"size": "2Gi"}}, "storage is immutable"),
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
