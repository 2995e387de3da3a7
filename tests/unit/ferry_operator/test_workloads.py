"""Every pod Ferry creates: the operator's image unless overridden, the user's podTemplate
laid over it, and no fixed UID/GID unless asked for."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.operator.reconcile import images, pipelines, queues
from ferry.operator.reconcile.metadata import INSTANCE
from ferry.operator.reconcile.specs import Owner, QueueSpec, TelemetryPipelineSpec
from ferry.operator.reconcile.workloads import PodDefaults

from .conftest import DEFAULTS, Defaulted

pytestmark = pytest.mark.unit
QUEUE = Owner(api_version="ferry.dev/v1alpha1", kind="Queue", name="orders", namespace="shop",
              uid="u-1")
PIPELINE = Owner(api_version="ferry.dev/v1alpha1", kind="TelemetryPipeline", name="gpu",
                 namespace="lab", uid="u-3")
SOURCE = {"path": "/data/x.csv"}
TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"team": "gpu", INSTANCE: "hijack"},
                 "annotations": {"cost-center": "42"}},
    "spec": {
        "nodeSelector": {"pool": "queues"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "queues",
                         "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname",
             "labelSelector": {"matchLabels": {"team": "gpu"}}}]}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "ScheduleAnyway"}],
        "priorityClassName": "queues-high",
        "serviceAccountName": "brokers",
        "imagePullSecrets": [{"name": "mirror"}, {"name": "shared"}],
    },
}
WITH_SECRETS = PodDefaults(image="registry.example.com/ferry:9.9.9", pull_secrets=("shared",))


def broker_pod(defaulted: Defaulted, defaults: PodDefaults = DEFAULTS,
               **fields: Any) -> dict[str, Any]:
    spec = QueueSpec.model_validate(defaulted("Queue", fields))
    sts = next(k for k in queues.children(QUEUE, spec, defaults) if k["kind"] == "StatefulSet")
    return sts["spec"]["template"]  # type: ignore[no-any-return]


def pipeline_pods(defaulted: Defaulted, **fields: Any) -> dict[str, dict[str, Any]]:
    fields.setdefault("streamer", {"source": SOURCE})
    spec = TelemetryPipelineSpec.model_validate(defaulted("TelemetryPipeline", fields))
    return {k["kind"] + "/" + k["metadata"]["name"]: k["spec"]["template"]
            for k in pipelines.children(PIPELINE, spec, "http://b", DEFAULTS)
            if k["kind"] in ("StatefulSet", "Deployment")}


def all_pods(defaulted: Defaulted, template: dict[str, Any] | None) -> list[dict[str, Any]]:
    extra = {"podTemplate": template} if template else {}
    return [broker_pod(defaulted, **extra), *pipeline_pods(defaulted, **extra).values()]


def test_the_operator_decides_the_default_image(defaulted: Defaulted) -> None:
    assert broker_pod(defaulted)["spec"]["containers"][0]["image"] == DEFAULTS.image
    assert {p["spec"]["containers"][0]["image"] for p in pipeline_pods(defaulted).values()} \
        == {DEFAULTS.image}


def test_spec_image_overrides_the_operators(defaulted: Defaulted) -> None:
    pinned = broker_pod(defaulted, broker={"image": "mirror.example/ferry:1"})
    assert pinned["spec"]["containers"][0]["image"] == "mirror.example/ferry:1"
    pods = pipeline_pods(defaulted, image="mirror.example/ferry:2",
                         collector={"image": "mirror.example/collector:3"})
    assert {k: p["spec"]["containers"][0]["image"] for k, p in pods.items()} == {
        "StatefulSet/gpu-streamer": "mirror.example/ferry:2",
        "Deployment/gpu-collector": "mirror.example/collector:3",
        "Deployment/gpu-api": "mirror.example/ferry:2"}


def test_own_image_is_the_operator_containers_else_the_release() -> None:
    pod = {"spec": {"containers": [{"name": "sidecar", "image": "proxy:1"},
                                   {"name": images.CONTAINER, "image": "reg.example/ferry:2"}]}}
    assert images.own(pod) == "reg.example/ferry:2"
    assert images.own(None) == images.release() == "ghcr.io/ferry-dev/ferry:0.1.0"


def test_pods_run_without_fixed_ids_unless_asked(defaulted: Defaulted) -> None:
    for pod in all_pods(defaulted, None):
        assert pod["spec"]["securityContext"] == {"runAsNonRoot": True,
                                                  "seccompProfile": {"type": "RuntimeDefault"}}
    asked = {"spec": {"securityContext": {"runAsUser": 1000, "fsGroup": 2000}}}
    for pod in all_pods(defaulted, asked):
        assert pod["spec"]["securityContext"] == {
            "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
            "runAsUser": 1000, "fsGroup": 2000}


def test_pod_template_reaches_every_workload_merged_field_by_field(defaulted: Defaulted) -> None:
    pods = all_pods(defaulted, TEMPLATE)
    assert len(pods) == 4  # broker, streamer, collector, API
    for pod in pods:
        meta, spec = pod["metadata"], pod["spec"]
        assert meta["labels"]["team"] == "gpu"
        assert meta["labels"][INSTANCE] in ("orders", "gpu")  # Ferry's selector label wins
        assert meta["annotations"]["cost-center"] == "42"
        for field in ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints",
                      "priorityClassName", "serviceAccountName", "imagePullSecrets"):
            assert spec[field] == TEMPLATE["spec"][field], field
        assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_each_pipeline_workload_lays_its_own_pod_template_over_the_shared_one(
        defaulted: Defaulted) -> None:
    shared = {"metadata": {"labels": {"team": "gpu", "tier": "shared"}},
              "spec": {"nodeSelector": {"pool": "gpu"}, "priorityClassName": "normal",
                       "tolerations": [{"key": "gpu", "operator": "Exists"}],
                       "imagePullSecrets": [{"name": "mirror"}],
                       "securityContext": {"runAsUser": 1000}}}
    streamer = {"metadata": {"labels": {"tier": "ingest"}},
                "spec": {"nodeSelector": {"pool": "edge", "zone": "a"}}}
    collector = {"metadata": {"annotations": {"cost-center": "7"}},
                 "spec": {"tolerations": [{"key": "spot", "operator": "Exists"}],
                          "securityContext": {"fsGroup": 2000}}}
    api = {"spec": {"priorityClassName": "low", "serviceAccountName": "api-reader",
                    "imagePullSecrets": [{"name": "api-mirror"}, {"name": "mirror"}]}}
    pods = pipeline_pods(defaulted, podTemplate=shared,
                         streamer={"source": SOURCE, "podTemplate": streamer},
                         collector={"podTemplate": collector}, api={"podTemplate": api})
    s = pods["StatefulSet/gpu-streamer"]
    c = pods["Deployment/gpu-collector"]
    a = pods["Deployment/gpu-api"]
    assert s["spec"]["nodeSelector"] == {"pool": "edge", "zone": "a"}
    assert s["metadata"]["labels"]["tier"] == "ingest"
    assert s["spec"]["tolerations"] == shared["spec"]["tolerations"]  # not set: the shared
    assert c["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert c["spec"]["tolerations"] == [{"key": "spot", "operator": "Exists"}]
    assert c["metadata"]["annotations"] == {"cost-center": "7"}
    assert c["spec"]["securityContext"]["runAsUser"] == 1000
    assert c["spec"]["securityContext"]["fsGroup"] == 2000
    assert "fsGroup" not in s["spec"]["securityContext"]
    assert a["spec"]["priorityClassName"] == "low"
    assert a["spec"]["serviceAccountName"] == "api-reader"
    assert a["spec"]["imagePullSecrets"] == [{"name": "mirror"}, {"name": "api-mirror"}]
    assert {p["metadata"]["labels"]["team"] for p in pods.values()} == {"gpu"}
    assert {p["spec"]["priorityClassName"] for p in (s, c)} == {"normal"}
    for pod in pods.values():  # Ferry's selector label stays Ferry's
        assert pod["metadata"]["labels"][INSTANCE] == "gpu"


def test_a_workload_pod_template_alone_reaches_only_that_workload(
        defaulted: Defaulted) -> None:
    pods = pipeline_pods(defaulted, collector={
        "podTemplate": {"spec": {"nodeSelector": {"pool": "cpu"}}}})
    assert pods["Deployment/gpu-collector"]["spec"]["nodeSelector"] == {"pool": "cpu"}
    assert "nodeSelector" not in pods["StatefulSet/gpu-streamer"]["spec"]
    assert "nodeSelector" not in pods["Deployment/gpu-api"]["spec"]


def test_image_pull_secrets_add_to_the_operators_each_once(defaulted: Defaulted) -> None:
    plain = broker_pod(defaulted, WITH_SECRETS)
    assert plain["spec"]["imagePullSecrets"] == [{"name": "shared"}]
    merged = broker_pod(defaulted, WITH_SECRETS, podTemplate=TEMPLATE)
    assert merged["spec"]["imagePullSecrets"] == [{"name": "shared"}, {"name": "mirror"}]
    assert "imagePullSecrets" not in broker_pod(defaulted)["spec"]


def test_api_resources_are_set(defaulted: Defaulted) -> None:
    api = pipeline_pods(defaulted)["Deployment/gpu-api"]["spec"]["containers"][0]
    assert api["resources"]["limits"]["memory"]
