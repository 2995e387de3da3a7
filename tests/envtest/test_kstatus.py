"""Status that GitOps tools read, computed by cli-utils' kstatus (the Go library Flux, kpt
and Config Sync use, built here from the module proxy) while pods really run (the demo's
process kubelet): create, an image change, a broken spec and a recovery; `kubectl wait`;
the pause annotation."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nodes import UNPULLABLE, Node
from operating import apply, condition, cr, get, on_broker, reconciled

from kubeplane.building import located
from kubeplane.tools import KSTATUS

pytestmark = pytest.mark.envtest
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "dcgm_sample.csv"
IMAGE = "ghcr.io/ferry-dev/ferry:0.1.0"
KINDS = [("telemetrypipeline", "gpu"), ("queue", "gpu"), ("consumergroup", "gpu-collectors")]


def kstatus(plane: Any, namespace: str, kind: str, name: str) -> str:
    """kstatus's verdict (InProgress, Current, Failed, ...) on the object as stored now."""
    obj = plane.kubectl("get", "-n", namespace, kind, name, "-o", "json").stdout
    out = subprocess.run([str(located(KSTATUS) / "kstatus")], input=obj, text=True,
                         capture_output=True, check=True, timeout=60)
    return str(json.loads(out.stdout)["status"])


def external(url: str) -> dict[str, Any]:
    """A broker Ferry does not run: its address and the Secret with its token."""
    return {"url": url, "connectionSecret": {"name": "conn"}}


def allow_external_brokers(plane: Any, namespace: str, run_operator: Any) -> None:
    run_operator("--external-broker-namespaces", namespace)
    plane.kubectl("create", "secret", "generic", "-n", namespace, "conn",
                  "--from-literal=token=t")


def pipeline(broker_url: str, image: str) -> dict[str, Any]:
    return cr("TelemetryPipeline", "gpu", {
        "image": image,
        "queue": {"broker": external(broker_url)},
        "streamer": {"replicas": 1, "loop": True, "ratePerSecond": 5,
                     "source": {"configMap": {"name": "dcgm", "key": "sample.csv"}}},
        "collector": {"minReplicas": 1, "maxReplicas": 1},
        "api": {"enabled": False}})


@pytest.fixture
def node(process_kubelet: Callable[..., Node]) -> Node:
    """The process kubelet, synced only when a step asks (a rollout waits meanwhile)."""
    return process_kubelet(every=None)


@pytest.mark.timeout(1200)  # four rollouts on a loaded 2-core machine
def test_kstatus_through_create_image_change_broken_spec_and_recovery(
        control_plane: Any, namespace: str, broker: Any, run_operator: Any, node: Node,
        eventually: Any) -> None:
    located(KSTATUS)  # fails with `make tools` when the program is not built
    # No --broker-url: the pipeline's pods really run, so rollouts count.
    allow_external_brokers(control_plane, namespace, run_operator)
    rows = "".join(SAMPLE.read_text().splitlines(keepends=True)[:21])
    control_plane.kubectl("create", "configmap", "dcgm", "-n", namespace,
                          f"--from-literal=sample.csv={rows}")

    def status_of(kind: str, name: str, wanted: str, sync: bool) -> str | None:
        if sync:
            node.sync()
        found = kstatus(control_plane, namespace, kind, name)
        return found if found == wanted else None

    # 1. Create: InProgress while no pod runs (the kubelet is held), Current once they do.
    apply(control_plane, namespace, pipeline(broker.url, IMAGE))
    eventually(lambda: status_of("telemetrypipeline", "gpu", "InProgress", sync=False),
               "kstatus: the new pipeline is InProgress", timeout=180)
    eventually(lambda: all(status_of(k, n, "Current", sync=True) for k, n in KINDS),
               "kstatus: pipeline, queue and group are Current once the pods run", timeout=300)

    # 2. An image change: InProgress until the new pods replaced the old ones.
    apply(control_plane, namespace, pipeline(broker.url, IMAGE.replace("0.1.0", "0.1.1")))

    def rolling_out() -> bool:
        # Past the generation check: the operator applied the new spec and says it rolls out.
        tp = get(control_plane, namespace, "tp", "gpu") or {}
        return (tp["status"]["observedGeneration"] == tp["metadata"]["generation"]
                and condition(tp, "Reconciling") == ("True", "ChildrenNotReady")
                and condition(tp, "Ready") == ("False", "ChildrenNotReady")
                and kstatus(control_plane, namespace, "telemetrypipeline", "gpu") == "InProgress")
    eventually(rolling_out, "kstatus: the image change is InProgress while it rolls out",
               timeout=180)
    with node.syncing():
        # kubectl wait reads Ready like any client would, on all three kinds.
        control_plane.kubectl("wait", "-n", namespace, "--for=condition=Ready", "--timeout=300s",
                              "telemetrypipeline/gpu", "queue/gpu", "consumergroup/gpu-collectors",
                              timeout=330)
        # The operator upgrades one workload at a time: wait for the last one.
        def upgraded() -> bool:
            found = get(control_plane, namespace, "deployment", "gpu-collector") or {}
            image = found["spec"]["template"]["spec"]["containers"][0]["image"]
            return bool(image.endswith("0.1.1")) and kstatus(
                control_plane, namespace, "telemetrypipeline", "gpu") == "Current"
        eventually(upgraded, "kstatus: Current with every workload on the new image",
                   timeout=300)

    # 3. A broken spec (an image no registry has): Failed, with the pod's reason.
    apply(control_plane, namespace, pipeline(broker.url, f"{UNPULLABLE}ferry:missing"))
    eventually(lambda: status_of("telemetrypipeline", "gpu", "Failed", sync=True),
               "kstatus: a pipeline whose pods cannot pull their image is Failed", timeout=300)
    stalled = next(c for c in (get(control_plane, namespace, "tp", "gpu") or {})["status"]
                   ["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and "degraded: " in stalled["message"]

    # 4. Recovery: the image fixed, the pipeline is Current again.
    apply(control_plane, namespace, pipeline(broker.url, IMAGE))
    eventually(lambda: status_of("telemetrypipeline", "gpu", "Current", sync=True),
               "kstatus: the fixed pipeline is Current again", timeout=300)
    generation = (get(control_plane, namespace, "tp", "gpu") or {})["metadata"]["generation"]
    assert (get(control_plane, namespace, "tp", "gpu") or {})["status"][
        "observedGeneration"] == generation


def test_queue_and_group_fail_while_their_broker_is_down(
        control_plane: Any, namespace: str, broker: Any, run_operator: Any,
        eventually: Any) -> None:
    allow_external_brokers(control_plane, namespace, run_operator)
    apply(control_plane, namespace, cr("Queue", "orders", {"broker": external(broker.url)}))
    apply(control_plane, namespace, cr("ConsumerGroup", "workers", {"queue": "orders"}))
    pair = [("queue", "orders"), ("consumergroup", "workers")]

    def all_are(wanted: str) -> bool:
        return all(kstatus(control_plane, namespace, k, n) == wanted for k, n in pair)

    eventually(lambda: all_are("Current"), "kstatus: queue and group Current")
    control_plane.kubectl("wait", "-n", namespace, "--for=condition=Ready", "--timeout=60s",
                          "queue/orders", "consumergroup/workers")
    broker.stop(timeout=10)
    eventually(lambda: all_are("Failed"), "kstatus: Failed while the broker is gone")
    broker.restart()
    eventually(lambda: all_are("Current"), "kstatus: Current again once the broker is back")


def test_pause_stops_every_write_and_resume_applies_what_changed(
        control_plane: Any, namespace: str, broker: Any, run_operator: Any,
        eventually: Any) -> None:
    allow_external_brokers(control_plane, namespace, run_operator)
    apply(control_plane, namespace, cr("Queue", "orders", {"broker": external(broker.url),
                                                           "maxDeliveries": 3}))
    eventually(lambda: reconciled(control_plane, namespace, "queue", "orders"),
               "the queue is Ready")
    control_plane.kubectl("annotate", "-n", namespace, "queue", "orders",
                          "ferry.dev/reconcile=paused")
    eventually(lambda: condition(get(control_plane, namespace, "queue", "orders"),
                                 "ReconciliationPaused") == ("True", "ReconciliationPaused"),
               "the paused queue shows ReconciliationPaused")
    apply(control_plane, namespace, cr("Queue", "orders", {"broker": external(broker.url),
                                                           "maxDeliveries": 7}))

    def handled() -> bool:
        # kopf records the spec it handled last: the change reached the paused operator.
        note = (((get(control_plane, namespace, "queue", "orders") or {}).get("status") or {})
                .get("kopf") or {}).get("last-handled-configuration", "{}")
        return bool(json.loads(note).get("spec", {}).get("maxDeliveries") == 7)
    eventually(handled, "the operator saw the change while paused")
    queue = get(control_plane, namespace, "queue", "orders") or {}
    assert queue["status"]["observedGeneration"] < queue["metadata"]["generation"]
    assert on_broker(broker.url, lambda c: c.queue_stats("orders")).settings.max_deliveries == 3

    control_plane.kubectl("annotate", "-n", namespace, "queue", "orders", "ferry.dev/reconcile-")
    eventually(lambda: on_broker(broker.url, lambda c: c.queue_stats("orders"))
               .settings.max_deliveries == 7, "resumed: the change reaches the broker")
    eventually(lambda: condition(get(control_plane, namespace, "queue", "orders"),
                                 "ReconciliationPaused") == ("False", "ReconciliationResumed"),
               "ReconciliationPaused turns False")
