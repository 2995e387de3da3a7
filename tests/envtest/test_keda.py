"""The KEDA provider against the real KEDA, built from the Go module proxy.

`keda-operator` and `keda-adapter` (KEDA's metrics server) run as processes against the
envtest control plane, the adapter registered as the cluster's external metrics API; a
real `ferry-operator` and `ferry-broker` run beside them. kube-controller-manager's HPA
controller scales on KEDA's HPA, KEDA takes the 0 <-> 1 step. No kubelet: the
Deployment's pods are created, never run, which neither KEDA nor the HPA needs here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.broker_process import BrokerProcess
from fixtures.keda import Keda
from operating import apply, condition, cr, drain, get, publish, replicas, table, workload

pytestmark = [pytest.mark.envtest, pytest.mark.keda]

ROOT = Path(__file__).resolve().parents[2]
QUEUE, CONSUMERS = "jobs", "workers"
Eventually = Callable[..., Any]


def _group(provider: str, **autoscaling: Any) -> dict[str, Any]:
    return cr("ConsumerGroup", CONSUMERS, {"queue": QUEUE, "autoscaling": {
        "provider": provider, "target": {"name": CONSUMERS}, "minReplicas": 0,
        "maxReplicas": 5, "lagPerReplica": 10, "pollingInterval": "1s",
        "scaleDownStabilization": "0s", "idleAfter": "2s", **autoscaling}})


def workers(plane: Any, namespace: str) -> int:
    return replicas(plane, namespace, CONSUMERS)


def test_keda_scales_the_workers_on_the_backlog_and_back_to_zero(
        control_plane: Any, namespace: str, broker: BrokerProcess, keda: Keda,
        run_operator: Any, eventually: Eventually) -> None:
    run_operator(broker_url=broker.url)
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(workload(namespace, CONSUMERS)))
    apply(control_plane, namespace, cr("Queue", QUEUE, {}))
    apply(control_plane, namespace, _group("KEDA"))

    scaled = eventually(lambda: get(control_plane, namespace, "scaledobject", CONSUMERS),
                        "the ConsumerGroup's ScaledObject exists")
    group = get(control_plane, namespace, "cg", CONSUMERS)
    assert group is not None
    assert scaled["metadata"]["ownerReferences"][0]["uid"] == group["metadata"]["uid"]
    assert get(control_plane, namespace, "hpa", CONSUMERS) is None  # no Ferry HPA
    eventually(lambda: condition(get(control_plane, namespace, "cg", CONSUMERS),
                                 "ScalingActive") == ("True", "KEDA"),
               "ScalingActive says KEDA scales the group")

    # KEDA reads no backlog: after cooldownPeriod (idleAfter) the workers go to zero.
    eventually(lambda: workers(control_plane, namespace) == 0,
               "KEDA scales the idle workers to zero")

    # 35 messages: KEDA activates the target, its HPA aims for ceil(35 / 10) = 4.
    publish(broker.url, QUEUE, 35)
    eventually(lambda: workers(control_plane, namespace) == 4,
               "4 workers for a backlog of 35 at 10 per replica")
    hpa = eventually(lambda: get(control_plane, namespace, "hpa", f"keda-hpa-{CONSUMERS}"),
                     "KEDA's HPA exists")
    assert hpa["spec"]["maxReplicas"] == 5
    eventually(lambda: (table(control_plane, namespace, "cg").get(CONSUMERS) or {}).get(
        "REPLICAS") == "4", "kubectl get cg shows KEDA's 4 replicas")

    # Drained: back to zero (minReplicas 0), through KEDA alone.
    assert drain(broker.url, QUEUE, CONSUMERS) == 35
    eventually(lambda: workers(control_plane, namespace) == 0,
               "back to zero once the backlog is worked off")

    # The ScaledObject goes with the autoscaling spec (and KEDA's HPA with it).
    control_plane.kubectl("patch", "cg", CONSUMERS, "-n", namespace, "--type=json",
                          "-p", '[{"op": "remove", "path": "/spec/autoscaling"}]')
    eventually(lambda: get(control_plane, namespace, "scaledobject", CONSUMERS) is None,
               "removing autoscaling removes the ScaledObject")


def test_beside_keda_ferry_never_takes_the_metrics_api_and_auto_falls_back(
        control_plane: Any, namespace: str, broker: BrokerProcess, keda: Keda,
        run_operator: Any, eventually: Eventually) -> None:
    """KEDA holds v1beta1.external.metrics.k8s.io: provider Auto scales through KEDA,
    provider Ferry says why it cannot scale, and the APIService stays KEDA's."""
    run_operator(broker_url=broker.url)
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(workload(namespace, CONSUMERS)))
    apply(control_plane, namespace, cr("Queue", QUEUE, {}))
    apply(control_plane, namespace, _group("Auto"))

    def scaling() -> tuple[str, str] | None:
        return condition(get(control_plane, namespace, "cg", CONSUMERS), "ScalingActive")

    eventually(lambda: scaling() == ("True", "KEDAFallback"), "Auto falls back to KEDA")
    # Applied on the next resync after the choice (the stats pass only judges).
    eventually(lambda: get(control_plane, namespace, "scaledobject", CONSUMERS),
               "the fallen-back group owns a ScaledObject")
    publish(broker.url, QUEUE, 15)
    eventually(lambda: workers(control_plane, namespace) == 2,
               "KEDA scales the fallen-back group to ceil(15 / 10) = 2")

    apply(control_plane, namespace, _group("Ferry"))
    eventually(lambda: scaling() == ("False", "MetricsApiTaken"),
               "provider Ferry says the metrics API is someone else's")
    group = get(control_plane, namespace, "cg", CONSUMERS)
    message = next(c["message"] for c in group["status"]["conditions"]
                   if c["type"] == "ScalingActive")
    assert f"{namespace}/keda-metrics" in message
    eventually(lambda: get(control_plane, namespace, "scaledobject", CONSUMERS) is None,
               "the ScaledObject is pruned once KEDA is no longer the provider")

    # Installing Ferry's metrics API now is refused instead of taking KEDA's APIService over.
    rendered = control_plane.kubectl("kustomize", str(ROOT / "manifests")).stdout
    (ours,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "APIService"]
    refused = control_plane.kubectl("apply", "--server-side", "-f", "-",
                                    input=json.dumps(ours), check=False)
    assert refused.returncode != 0, refused.stdout
    apiservice = control_plane.kubectl_json("get", "apiservice",
                                            "v1beta1.external.metrics.k8s.io")
    assert apiservice["spec"]["service"]["name"] == "keda-metrics"
