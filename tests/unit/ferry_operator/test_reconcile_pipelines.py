"""TelemetryPipeline -> child Queue, ConsumerGroup and workloads; status from the children."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ferry.operator.reconcile import pipelines
from ferry.operator.reconcile.specs import Owner, TelemetryPipelineSpec

from .conftest import DEFAULTS, Defaulted

pytestmark = pytest.mark.unit
NOW = datetime(2026, 1, 2, tzinfo=UTC)
OWNER = Owner(api_version="ferry.dev/v1alpha1", kind="TelemetryPipeline", name="gpu",
              namespace="lab", uid="u-3", generation=2)
SOURCE = {"configMap": {"name": "dcgm", "key": "sample.csv"}}


def spec(defaulted: Defaulted, **fields: Any) -> TelemetryPipelineSpec:
    fields.setdefault("streamer", {"source": SOURCE})
    return TelemetryPipelineSpec.model_validate(defaulted("TelemetryPipeline", fields))


def by_key(kids: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{k['kind']}/{k['metadata']['name']}": k for k in kids}


def test_children_and_owner_references(defaulted: Defaulted) -> None:
    kids = by_key(pipelines.children(OWNER, spec(defaulted), "http://b:7070", DEFAULTS))
    assert list(kids) == ["Queue/gpu", "ConsumerGroup/gpu-collectors", "StatefulSet/gpu-streamer",
                          "Deployment/gpu-collector", "Deployment/gpu-api", "Service/gpu-api"]
    assert all(k["metadata"]["ownerReferences"][0]["uid"] == "u-3" for k in kids.values())


def test_child_queue_carries_the_whole_queue_spec(defaulted: Defaulted) -> None:
    s = spec(defaulted, queue={"maxDeliveries": 7, "deletionPolicy": "Retain"})
    kids = by_key(pipelines.children(OWNER, s, "http://b", DEFAULTS))
    queue_spec = kids["Queue/gpu"]["spec"]
    assert queue_spec == defaulted("Queue", {"maxDeliveries": 7, "deletionPolicy": "Retain"})
    assert kids["ConsumerGroup/gpu-collectors"]["spec"]["deletionPolicy"] == "Retain"


def test_collectors_autoscale_through_their_group_and_leave_replicas_alone(
        defaulted: Defaulted) -> None:
    s = spec(defaulted, collector={"minReplicas": 2, "maxReplicas": 6, "lagPerReplica": 50})
    kids = by_key(pipelines.children(OWNER, s, "http://b", DEFAULTS))
    assert kids["ConsumerGroup/gpu-collectors"]["spec"]["autoscaling"] == {
        "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gpu-collector"},
        "minReplicas": 2, "maxReplicas": 6, "lagPerReplica": 50}
    assert "replicas" not in kids["Deployment/gpu-collector"]["spec"]


def test_streamers_split_by_pod_index(defaulted: Defaulted) -> None:
    s = spec(defaulted, streamer={"source": SOURCE, "replicas": 3, "ratePerSecond": 100,
                                  "loop": True})
    sts = by_key(pipelines.children(OWNER, s, "http://b", DEFAULTS))["StatefulSet/gpu-streamer"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert sts["spec"]["replicas"] == 3
    args = container["args"]
    assert args[args.index("--instance-count") + 1] == "3"
    assert "--loop" in args and args[-1] == "/etc/ferry/source/sample.csv"
    volumes = sts["spec"]["template"]["spec"]["volumes"]
    assert {"name": "source", "configMap": {"name": "dcgm", "items": [
        {"key": "sample.csv", "path": "sample.csv"}]}} in volumes


def test_database_from_secret_and_api_toggle(defaulted: Defaulted) -> None:
    s = spec(defaulted, collector={"storage": {"secretKeyRef": {"name": "db", "key": "url"}}},
             api={"enabled": False})
    kids = by_key(pipelines.children(OWNER, s, "http://b", DEFAULTS))
    assert "Deployment/gpu-api" not in kids and "Service/gpu-api" not in kids
    env = kids["Deployment/gpu-collector"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "FERRY_STORAGE",
                    "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
                   {"name": "FERRY_BROKER_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": "gpu-broker-token", "key": "token"}}}]


def _ready_cr(kind: str, name: str, lag: int = 0) -> dict[str, Any]:
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": kind, "metadata": {"name": name},
            "status": {"lag": lag, "conditions": [{"type": "Ready", "status": "True"}]}}


def _workload(kind: str, name: str, ready: int, replicas: int | None = None) -> dict[str, Any]:
    """A workload whose controller updated every replica to the current spec; `ready` of
    them are ready."""
    spec = {} if replicas is None else {"replicas": replicas}
    wanted = 1 if replicas is None else replicas
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "generation": 2},
            "spec": spec, "status": {"observedGeneration": 2, "replicas": wanted,
                                     "updatedReplicas": wanted, "readyReplicas": ready}}


def test_status_counts_ready_children_and_reads_lag(defaulted: Defaulted) -> None:
    s = spec(defaulted, api={"enabled": False})
    desired = pipelines.children(OWNER, s, "http://b", DEFAULTS)
    observed = {"Queue/gpu": _ready_cr("Queue", "gpu"),
                "ConsumerGroup/gpu-collectors": _ready_cr("ConsumerGroup", "gpu-collectors", 77),
                "StatefulSet/gpu-streamer": _workload("StatefulSet", "gpu-streamer", 0, 1)}
    st = pipelines.status(owner=OWNER, desired=desired, observed=observed, endpoint_url="http://b",
                          previous=[], now=NOW)
    assert (st["lag"], st["streamers"], st["collectors"], st["readyChildren"]) == (77, 0, 0, "2/4")
    ready = {c["type"]: c for c in st["conditions"]}
    assert ready["Progressing"]["status"] == "True"
    assert "StatefulSet/gpu-streamer" in ready["Progressing"]["message"]
    observed["StatefulSet/gpu-streamer"] = _workload("StatefulSet", "gpu-streamer", 1, 1)
    observed["Deployment/gpu-collector"] = _workload("Deployment", "gpu-collector", 2)
    st = pipelines.status(owner=OWNER, desired=desired, observed=observed, endpoint_url="http://b",
                          previous=[], now=NOW)
    assert (st["streamers"], st["collectors"], st["readyChildren"]) == (1, 2, "4/4")
    assert [c["type"] for c in st["conditions"] if c["status"] == "True"] == ["Ready"]


def test_a_degraded_child_degrades_the_pipeline(defaulted: Defaulted) -> None:
    desired = pipelines.children(OWNER, spec(defaulted, api={"enabled": False}), "http://b",
                                 DEFAULTS)
    queue = _ready_cr("Queue", "gpu")
    queue["status"]["conditions"] = [{"type": "Degraded", "status": "True"}]
    st = pipelines.status(owner=OWNER, desired=desired, observed={"Queue/gpu": queue},
                          endpoint_url="http://b", previous=[], now=NOW)
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and "Queue/gpu" in degraded["message"]
