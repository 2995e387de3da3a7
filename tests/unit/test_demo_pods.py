"""The demo's stand-in kubelet runs exactly what the operator puts in pod templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ferry_operator.conftest import DEFAULTS, apply_defaults, spec_schema

from ferry.operator.reconcile import pipelines, queues
from ferry.operator.reconcile.specs import Owner, QueueSpec, TelemetryPipelineSpec
from ferrydemo.pods import MissingReferenceError, Node, UnsupportedPodError, expand, local_pod

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.unit
OWNER = Owner(api_version="ferry.dev/v1alpha1", kind="TelemetryPipeline", name="gpu-telemetry",
              namespace="ferry-demo", uid="u-1", generation=1)
IN_CLUSTER = "http://gpu-telemetry-broker.ferry-demo.svc:7070"


def _example_children() -> dict[str, dict[str, Any]]:
    body = yaml.safe_load((ROOT / "examples" / "telemetrypipeline.yaml").read_text())
    spec = TelemetryPipelineSpec.model_validate(
        apply_defaults(spec_schema("TelemetryPipeline"), body["spec"]))
    return {f"{k['kind']}/{k['metadata']['name']}": k
            for k in pipelines.children(OWNER, spec, IN_CLUSTER, DEFAULTS)}


def _node(tmp_path: Path) -> Node:
    return Node(
        volumes=tmp_path / "volumes",
        image_files={"/usr/share/ferry/examples": ROOT / "examples" / "data"},
        services={IN_CLUSTER: "http://127.0.0.1:17070",
                  "telemetry-db:5432": "127.0.0.1:15432"},
        ports={8080: 18080},
        config_maps={},
        secrets={"telemetry-db": {"url": "postgresql://ferry:pw@telemetry-db:5432/telemetry"},
                 "gpu-telemetry-broker-token": {"token": "t0k3n"}},
    )


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "x"}
    assert expand("$(A)-$(B)-$(C)-$$(A)", env) == "1-x-$(C)-$(A)"


def test_streamer_replicas_split_the_example_input(tmp_path: Path) -> None:
    template = _example_children()["StatefulSet/gpu-telemetry-streamer"]["spec"]["template"]
    pods = [local_pod(template, workload="gpu-telemetry-streamer", namespace="ferry-demo",
                      index=i, node=_node(tmp_path)) for i in range(2)]
    for i, pod in enumerate(pods):
        argv = pod.argv
        assert argv[0] == "ferry-streamer"
        assert argv[argv.index("--instance-index") + 1] == str(i)
        assert argv[argv.index("--broker-url") + 1] == "http://127.0.0.1:17070"
        assert pod.env["FERRY_BROKER_TOKEN"] == "t0k3n"
        assert Path(argv[-1]) == ROOT / "examples" / "data" / "dcgm_sample.csv"
        assert Path(argv[-1]).is_file()


def test_collector_gets_the_database_from_the_secret(tmp_path: Path) -> None:
    template = _example_children()["Deployment/gpu-telemetry-collector"]["spec"]["template"]
    pod = local_pod(template, workload="gpu-telemetry-collector", namespace="ferry-demo",
                    index=0, node=_node(tmp_path))
    assert pod.env["FERRY_STORAGE"] == "postgresql://ferry:pw@127.0.0.1:15432/telemetry"
    assert IN_CLUSTER not in " ".join(pod.argv)


def test_api_port_is_moved_to_a_free_local_port(tmp_path: Path) -> None:
    template = _example_children()["Deployment/gpu-telemetry-api"]["spec"]["template"]
    pod = local_pod(template, workload="gpu-telemetry-api", namespace="ferry-demo", index=0,
                    node=_node(tmp_path))
    assert pod.argv[pod.argv.index("--port") + 1] == "18080"


def test_emptydirs_are_per_pod(tmp_path: Path) -> None:
    template = {"spec": {
        "containers": [{"name": "c", "command": ["run"], "args": ["/data/x.db"],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "emptyDir": {}}]}}
    a, b = (local_pod(template, workload="w", namespace="n", index=i, node=_node(tmp_path))
            for i in range(2))
    assert a.argv[1] != b.argv[1]
    assert Path(a.argv[1]).parent.is_dir()


def test_what_cannot_run_locally_is_refused_clearly(tmp_path: Path) -> None:
    template = {"spec": {"containers": [{"name": "c", "command": ["run"], "env": [
        {"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}]}}
    with pytest.raises(UnsupportedPodError, match="env X"):
        local_pod(template, workload="w", namespace="n", index=0, node=_node(tmp_path))


def test_a_secret_not_created_yet_is_waited_for_not_refused(tmp_path: Path) -> None:
    """The operator may create a workload just before its token Secret: the kubelet keeps
    such a pod waiting (CreateContainerConfigError) instead of giving up on it."""
    env = {"name": "T", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}
    volume = {"name": "v", "secret": {"secretName": "later",
                                      "items": [{"key": "token", "path": "token"}]}}
    whole = {"name": "v", "secret": {"secretName": "later"}}
    mounted = {"volumeMounts": [{"name": "v", "mountPath": "/t"}]}
    for container, volumes in (({"env": [env]}, []), (mounted, [volume]), (mounted, [whole])):
        template = {"spec": {"volumes": volumes, "containers": [
            {"name": "c", "command": ["run"], **container}]}}
        with pytest.raises(MissingReferenceError):
            local_pod(template, workload="w", namespace="n", index=0, node=_node(tmp_path))


def test_the_broker_reads_its_token_from_the_secret_volume(tmp_path: Path) -> None:
    spec = QueueSpec.model_validate(apply_defaults(spec_schema("Queue"), {}))
    owner = OWNER.model_copy(update={"kind": "Queue"})
    sts = next(c for c in queues.children(owner, spec, DEFAULTS) if c["kind"] == "StatefulSet")
    template = sts["spec"]["template"]
    # The StatefulSet controller adds the claim's volume to each pod it makes.
    template["spec"]["volumes"].append({"name": "data", "persistentVolumeClaim": {
        "claimName": "data-gpu-telemetry-broker-0"}})
    pod = local_pod(template, workload="gpu-telemetry-broker",
                    namespace="ferry-demo", index=0, node=_node(tmp_path))
    token_dir = Path(pod.argv[pod.argv.index("--token-file") + 1])  # every key of the Secret
    assert (token_dir / "token").read_text() == "t0k3n" and tmp_path in token_dir.parents
