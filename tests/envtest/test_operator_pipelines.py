"""TelemetryPipelines reconciled by a real ferry-operator: children, HPA-owned replicas left
alone, cascading deletion, and an operator killed mid-way converging without duplicates."""

from __future__ import annotations

from typing import Any

import pytest
from operating import apply, broker_queues, condition, cr, get, on_broker, queue_missing, reconciled

pytestmark = pytest.mark.envtest
PIPELINE = {"streamer": {"source": {"configMap": {"name": "dcgm", "key": "sample.csv"}},
                         "replicas": 2},
            "collector": {"minReplicas": 1, "maxReplicas": 3}}
CHILDREN = [("queue", "gpu"), ("consumergroup", "gpu-collectors"),
            ("statefulset", "gpu-streamer"), ("deployment", "gpu-collector"),
            ("deployment", "gpu-api"), ("service", "gpu-api")]


def children_of(plane: Any, namespace: str, uid: str) -> list[str]:
    """Every object labelled as this pipeline's child, as kind/name (duplicates included)."""
    out: list[str] = []
    for kind in ("queues", "consumergroups", "statefulsets", "deployments", "services"):
        found = plane.kubectl_json("get", "-n", namespace, kind, "-l",
                                   f"ferry.dev/owner-uid={uid}")
        out += [f"{kind}/{o['metadata']['name']}" for o in found["items"]]
    return sorted(out)


def test_pipeline_children_and_status(control_plane: Any, namespace: str, broker: Any,
                                      run_operator: Any, eventually: Any) -> None:
    run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("TelemetryPipeline", "gpu", PIPELINE))
    pipeline = get(control_plane, namespace, "tp", "gpu")
    assert pipeline is not None
    uid = pipeline["metadata"]["uid"]
    for kind, name in CHILDREN:
        obj = eventually(lambda k=kind, n=name: get(control_plane, namespace, k, n),
                         f"{kind}/{name} exists")
        (ref,) = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["uid"], ref["controller"]) == ("TelemetryPipeline", uid, True)
    # The child Queue and ConsumerGroup become Ready on the (local) broker; the workloads
    # cannot, since envtest runs no pods: the pipeline says so instead of lying.
    eventually(lambda: reconciled(control_plane, namespace, "cg", "gpu-collectors"),
               "the child group is Ready")
    status = eventually(lambda: (s := (get(control_plane, namespace, "tp", "gpu") or {})
                                 .get("status")) and s.get("readyChildren") == "3/6" and s,
                        "status counts the ready children")
    assert condition({"status": status}, "Progressing") == ("True", "ChildrenNotReady")
    assert status["lag"] == 0 and status["queue"] == "gpu"
    row = control_plane.kubectl("get", "-n", namespace, "tp", "gpu").stdout.splitlines()
    assert row[0].split()[:6] == ["NAME", "READY", "LAG", "STREAMERS", "COLLECTORS", "CHILDREN"]
    assert row[1].split()[1:6] == ["False", "0", "0", "0", "3/6"]
    sts = get(control_plane, namespace, "statefulset", "gpu-streamer")
    assert sts is not None and sts["spec"]["replicas"] == 2


def test_each_workload_gets_its_own_pod_template(control_plane: Any, namespace: str,
                                                 broker: Any, run_operator: Any,
                                                 eventually: Any) -> None:
    """The pipeline's podTemplate reaches every workload; each workload's own is laid over
    it, as the API server stored both."""
    run_operator(broker_url=broker.url)
    gpu_nodes = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    spec = {**PIPELINE,
            "podTemplate": {"metadata": {"labels": {"team": "gpu"}},
                            "spec": {"nodeSelector": {"pool": "shared"}}},
            "streamer": {**PIPELINE["streamer"], "podTemplate": {
                "metadata": {"annotations": {"scrape": "streamer"}},
                "spec": {"nodeSelector": {"pool": "edge"}, "tolerations": gpu_nodes}}},
            "collector": {**PIPELINE["collector"],
                          "resources": {"requests": {"cpu": "300m"}},
                          "podTemplate": {"spec": {"priorityClassName": "batch-low",
                                                   "securityContext": {"fsGroup": 3000}}}},
            "api": {"podTemplate": {"metadata": {"labels": {"team": "query"}},
                                    "spec": {"serviceAccountName": "telemetry-reader"}}}}
    apply(control_plane, namespace, cr("TelemetryPipeline", "gpu", spec))

    def template(kind: str, name: str) -> dict[str, Any]:
        found = eventually(lambda: get(control_plane, namespace, kind, name),
                           f"{kind}/{name} exists")
        return found["spec"]["template"]  # type: ignore[no-any-return]

    streamer = template("statefulset", "gpu-streamer")
    collector = template("deployment", "gpu-collector")
    api = template("deployment", "gpu-api")
    assert streamer["spec"]["nodeSelector"] == {"pool": "edge"}
    assert streamer["spec"]["tolerations"] == gpu_nodes
    assert streamer["metadata"]["annotations"]["scrape"] == "streamer"
    assert collector["spec"]["nodeSelector"] == {"pool": "shared"}
    assert collector["spec"]["priorityClassName"] == "batch-low"
    assert collector["spec"]["securityContext"]["fsGroup"] == 3000
    assert collector["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "300m"
    assert "tolerations" not in collector["spec"] and "tolerations" not in api["spec"]
    assert api["spec"]["serviceAccountName"] == "telemetry-reader"
    assert api["spec"]["nodeSelector"] == {"pool": "shared"}
    assert [p["metadata"]["labels"]["team"] for p in (streamer, collector, api)] \
        == ["gpu", "gpu", "query"]
    assert "fsGroup" not in streamer["spec"]["securityContext"]


def test_collector_replicas_belong_to_the_autoscaler(control_plane: Any, namespace: str,
                                                     broker: Any, run_operator: Any,
                                                     eventually: Any) -> None:
    run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("TelemetryPipeline", "gpu", PIPELINE))
    eventually(lambda: get(control_plane, namespace, "deployment", "gpu-collector"),
               "the collector Deployment exists")
    deployment = control_plane.kubectl_json("get", "-n", namespace, "deployment",
                                            "gpu-collector", "--show-managed-fields")
    ours = [m for m in deployment["metadata"]["managedFields"]
            if m["manager"] == "ferry-operator"]
    assert ours and all("f:replicas" not in m["fieldsV1"].get("f:spec", {}) for m in ours)
    # What an HPA does (through the scale subresource): the operator must not undo it.
    control_plane.kubectl("scale", "-n", namespace, "deployment", "gpu-collector",
                          "--replicas=3")
    generation = get(control_plane, namespace, "tp", "gpu")["metadata"]["generation"]  # type: ignore[index]
    apply(control_plane, namespace, cr("TelemetryPipeline", "gpu", {
        **PIPELINE, "streamer": {**PIPELINE["streamer"], "replicas": 1}}))
    eventually(lambda: get(control_plane, namespace, "statefulset", "gpu-streamer")
               ["spec"]["replicas"] == 1, "a spec change is applied")
    assert get(control_plane, namespace, "tp", "gpu")["metadata"]["generation"] > generation  # type: ignore[index]
    assert get(control_plane, namespace, "deployment", "gpu-collector")["spec"]["replicas"] == 3  # type: ignore[index]


def test_deleting_a_pipeline_cleans_up_broker_and_children(control_plane: Any, namespace: str,
                                                           broker: Any, run_operator: Any,
                                                           eventually: Any) -> None:
    run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("TelemetryPipeline", "gpu", PIPELINE))
    eventually(lambda: reconciled(control_plane, namespace, "cg", "gpu-collectors"),
               "the child group is Ready")
    assert "gpu" in broker_queues(broker.url)
    control_plane.kubectl("delete", "-n", namespace, "tp", "gpu", "--timeout=120s")
    for kind, name in CHILDREN:
        eventually(lambda k=kind, n=name: get(control_plane, namespace, k, n) is None,
                   f"{kind}/{name} is garbage-collected")
    eventually(lambda: queue_missing(broker.url, "gpu"),
               "the child Queue's finalizer deleted the queue on the broker")


def test_operator_killed_midway_converges_without_duplicates(
        control_plane: Any, namespace: str, broker: Any, run_operator: Any,
        eventually: Any) -> None:
    operator = run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("TelemetryPipeline", "gpu", PIPELINE))
    uid = get(control_plane, namespace, "tp", "gpu")["metadata"]["uid"]  # type: ignore[index]
    eventually(lambda: children_of(control_plane, namespace, uid), "the first child exists")
    operator.process.kill()  # SIGKILL: no cleanup, mid-way through the pipeline
    apply(control_plane, namespace, cr("TelemetryPipeline", "gpu", {
        **PIPELINE, "collector": {"minReplicas": 2, "maxReplicas": 4}}))
    operator.restart()
    expected = sorted(["queues/gpu", "consumergroups/gpu-collectors",
                       "statefulsets/gpu-streamer", "deployments/gpu-collector",
                       "deployments/gpu-api", "services/gpu-api"])
    eventually(lambda: children_of(control_plane, namespace, uid) == expected,
               "exactly one of each child")
    eventually(lambda: (get(control_plane, namespace, "cg", "gpu-collectors") or {})
               .get("spec", {}).get("autoscaling", {}).get("minReplicas") == 2,
               "the change made while the operator was down is applied")
    eventually(lambda: reconciled(control_plane, namespace, "cg", "gpu-collectors"),
               "the child group is Ready")
    stats = on_broker(broker.url, lambda c: c.list_queues())
    assert [q.queue for q in stats] == ["gpu"]
    assert [g.group for g in stats[0].groups] == ["gpu-collectors"]
    assert children_of(control_plane, namespace, uid) == expected
