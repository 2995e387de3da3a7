"""Lag-driven autoscaling on the real control plane: kube-apiserver's aggregation layer
routes external.metrics.k8s.io to a `ferry-metrics-api` process, which reads a real
`ferry-broker`; kube-controller-manager's HPA controller scales a Deployment on it.

There is no kubelet: the Deployment's pods are created but never run, which the HPA does
not need for an External metric with an AverageValue target.
"""

from __future__ import annotations

import json
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtures.broker_process import BrokerProcess
from operating import (
    apply,
    cr,
    drain,
    events,
    get,
    on_broker,
    publish,
    replicas,
    table,
    workload,
)
from testsupport.ports import free_port
from testsupport.processes import Process

from ferry.operator.reconcile import autoscaling
from ferry.operator.reconcile.specs import Autoscaling, Owner
from kubeplane import ControlPlane, aggregation

pytestmark = pytest.mark.envtest

GROUP, VERSION = "external.metrics.k8s.io", "v1beta1"
SERVICE = "metrics"  # short: the serving certificate's CN is <service>.<namespace>.svc
QUEUE, CONSUMERS = "jobs", "workers"
Eventually = Callable[..., Any]


@dataclass(frozen=True)
class MetricsApi:
    namespace: str
    url: str


@contextmanager
def serving_metrics_api(control_plane: ControlPlane, namespace: str, tmp_path: Path,
                        eventually: Eventually, *flags: str) -> Iterator[MetricsApi]:
    """ferry-metrics-api on 127.0.0.1, registered as v1beta1.external.metrics.k8s.io.

    It reads the front-proxy settings from kube-system/extension-apiserver-authentication
    and authorizes every request with a SubjectAccessReview, against this control plane.
    """
    cert, ca = aggregation.serving_cert(tmp_path / "serving", namespace, SERVICE)
    port = free_port()
    process = Process(
        [sys.executable, "-m", "ferry.operator.metricsapi",
         "--bind-address", "127.0.0.1", "--secure-port", str(port),
         "--tls-cert-file", str(cert.cert), "--tls-private-key-file", str(cert.key),
         "--kubeconfig", str(control_plane.kubeconfig), "--cache-ttl", "1",
         "--namespace", namespace, "--service", SERVICE, "--apiservice-check-seconds", "1",
         *flags], tmp_path / "metrics-api.log").start()
    manifests = aggregation.manifests(GROUP, VERSION, namespace=namespace, service=SERVICE,
                                      port=port, ca_bundle=ca.cert.read_bytes())
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
    try:
        control_plane.kubectl("apply", "-f", "-", input=document)

        def available() -> bool:
            assert process.alive(), process.tail()
            return aggregation.available(
                control_plane.kubectl_json("get", "apiservice", f"{VERSION}.{GROUP}"))

        eventually(available, f"APIService {VERSION}.{GROUP} becomes Available")
        yield MetricsApi(namespace=namespace, url=f"https://127.0.0.1:{port}")
    finally:
        control_plane.kubectl("delete", "-f", "-", "--wait=false", "--ignore-not-found",
                              input=document)
        process.stop()


@pytest.fixture
def metrics_api(control_plane: ControlPlane, namespace: str, broker: BrokerProcess,
                tmp_path: Path, eventually: Eventually) -> Iterator[MetricsApi]:
    """The metrics API serving the group `jobs/workers` of the test's broker (--group)."""
    on_broker(broker.url, lambda c: c.put_queue(QUEUE))
    on_broker(broker.url, lambda c: c.put_group(QUEUE, CONSUMERS))
    with serving_metrics_api(control_plane, namespace, tmp_path, eventually, "--group",
                             f"{namespace}/{QUEUE}/{CONSUMERS}={broker.url}") as api:
        yield api


def _readyz(api: MetricsApi, ca: Path) -> tuple[int, dict[str, Any]]:
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(f"{api.url}/readyz", timeout=5, context=context) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_metrics_api_says_when_another_server_holds_the_apiservice(
        control_plane: ControlPlane, metrics_api: MetricsApi, tmp_path: Path,
        eventually: Eventually) -> None:
    """KEDA (here: any other Service) takes v1beta1.external.metrics.k8s.io: Ferry's metrics
    API, which HPAs can no longer reach, says so on /readyz and in its log instead of
    serving in silence, and recovers when the APIService routes to it again."""
    ns, ca = metrics_api.namespace, tmp_path / "serving" / "ca.crt"
    # The server reads the APIService every second from its start, before the fixture
    # registered it: the APIService can be Available before its next read.
    eventually(lambda: _readyz(metrics_api, ca) == (200, {"status": "ok", "apiservice": "ours",
                                                          "served_by": f"{ns}/{SERVICE}"}),
               "the metrics API sees the APIService route to it")
    other = aggregation.manifests(GROUP, VERSION, namespace=ns, service="keda-metrics",
                                  port=free_port(), ca_bundle=ca.read_bytes())
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": other}))
    doc = eventually(lambda: (r := _readyz(metrics_api, ca))[0] == 503 and r[1],
                     "the metrics API reports the APIService taken")
    assert (doc["reason"], doc["apiservice"], doc["served_by"]) == (
        "apiservice_taken", "taken", f"{ns}/keda-metrics")
    assert "HorizontalPodAutoscalers never ask it" in doc["message"]
    log = (tmp_path / "metrics-api.log").read_text()
    assert f"is served by {ns}/keda-metrics, not by this server" in log
    ours = aggregation.manifests(GROUP, VERSION, namespace=ns, service=SERVICE,
                                 port=int(metrics_api.url.rsplit(":", 1)[1]),
                                 ca_bundle=ca.read_bytes())
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": ours}))
    eventually(lambda: _readyz(metrics_api, ca)[0] == 200, "ready again once it is ours")


def _lag_through_the_aggregator(control_plane: ControlPlane, namespace: str,
                                selector: str | None = None) -> dict[str, Any]:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/ferry_consumergroup_lag"
    if selector:
        path += f"?labelSelector={selector}"
    return json.loads(control_plane.kubectl("get", "--raw", path).stdout)  # type: ignore[no-any-return]


def test_kubectl_reads_the_groups_lag_through_the_aggregation_layer(
        control_plane: ControlPlane, metrics_api: MetricsApi, broker: BrokerProcess) -> None:
    ns = metrics_api.namespace
    publish(broker.url, QUEUE, 7)
    answer = _lag_through_the_aggregator(control_plane, ns)
    assert answer["kind"] == "ExternalMetricValueList"
    assert [(i["metricName"], i["metricLabels"], i["value"]) for i in answer["items"]] == [
        ("ferry_consumergroup_lag", {"namespace": ns, "queue": QUEUE, "group": CONSUMERS}, "7")]
    assert _lag_through_the_aggregator(control_plane, ns, "group=someone-else")["items"] == []
    discovery = json.loads(control_plane.kubectl("get", "--raw", f"/apis/{GROUP}/{VERSION}").stdout)
    assert [r["name"] for r in discovery["resources"]] == ["ferry_consumergroup_lag"]


def test_a_bad_selector_comes_back_as_the_servers_400(
        control_plane: ControlPlane, metrics_api: MetricsApi) -> None:
    path = (f"/apis/{GROUP}/{VERSION}/namespaces/{metrics_api.namespace}/"
            "ferry_consumergroup_lag?labelSelector=queue%20in%20(a")
    out = control_plane.kubectl("get", "--raw", path, check=False)
    assert out.returncode != 0
    assert "unbalanced parentheses" in out.stderr


def _hpa(namespace: str) -> dict[str, Any]:
    """The HPA exactly as the operator builds it for a ConsumerGroup `workers` on `jobs`,
    without the owner reference (no ConsumerGroup object exists in this test)."""
    spec = Autoscaling.model_validate({
        "provider": "Ferry", "pollingInterval": "10s",
        "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": CONSUMERS},
        "minReplicas": 1, "maxReplicas": 5, "lagPerReplica": 10,
        "scaleUpStabilization": "0s", "scaleDownStabilization": "1s", "idleAfter": "5m"})
    owner = Owner(api_version="ferry.dev/v1alpha1", kind="ConsumerGroup", name=CONSUMERS,
                  namespace=namespace, uid="not-an-object")
    hpa = autoscaling.build_hpa(owner, QUEUE, spec)
    del hpa["metadata"]["ownerReferences"]
    return hpa


def test_the_hpa_controller_scales_a_deployment_with_the_lag(
        control_plane: ControlPlane, metrics_api: MetricsApi, broker: BrokerProcess,
        eventually: Eventually) -> None:
    ns = metrics_api.namespace
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(workload(ns, CONSUMERS)))
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(_hpa(ns)))

    # 35 messages at 10 per replica: ceil(35 / 10) = 4 replicas.
    publish(broker.url, QUEUE, 35)
    eventually(lambda: replicas(control_plane, ns, CONSUMERS) == 4,
               "4 replicas for a lag of 35 at 10 per replica")
    hpa = control_plane.kubectl_json("get", "hpa", CONSUMERS, "-n", ns)
    assert hpa["status"]["currentMetrics"][0]["external"]["metric"]["name"] == (
        "ferry_consumergroup_lag")

    # 135 messages would want 14: maxReplicas bounds it at 5.
    publish(broker.url, QUEUE, 100)
    eventually(lambda: replicas(control_plane, ns, CONSUMERS) == 5,
               "the maximum of 5 replicas for a lag of 135")

    # Drained, the group has no lag: back to minReplicas.
    assert drain(broker.url, QUEUE, CONSUMERS) == 135
    eventually(lambda: replicas(control_plane, ns, CONSUMERS) == 1,
               "back to 1 replica once the lag is worked off")
    hpa = control_plane.kubectl_json("get", "hpa", CONSUMERS, "-n", ns)
    assert hpa["status"]["desiredReplicas"] == 1


def test_the_server_asks_the_api_server_who_may_read(
        control_plane: ControlPlane, metrics_api: MetricsApi, tmp_path: Path) -> None:
    """Called directly with the front proxy's certificate, the server still authorizes the
    named user with a SubjectAccessReview: an unknown user gets the server's own 403."""
    proxy = control_plane.paths.front_proxy_client
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # serving certificate checks are the aggregator's job
    context.load_cert_chain(str(proxy.cert), str(proxy.key))
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{metrics_api.namespace}/ferry_consumergroup_lag"

    def ask(user: str, group: str) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(metrics_api.url + path, headers={
            "X-Remote-User": user, "X-Remote-Group": group})
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, body = ask("mallory", "system:authenticated")
    assert (status, body["reason"]) == (403, "Forbidden")
    assert "'mallory'" in body["message"]
    status, body = ask("ferry-admin", "system:masters")
    assert (status, body["kind"]) == (200, "ExternalMetricValueList")


# --- the whole loop: a real ferry-operator owns the HPA and takes the 0 <-> 1 step ---------

def test_a_consumergroup_scales_its_workers_with_lag_and_to_zero_when_idle(
        control_plane: ControlPlane, namespace: str, broker: BrokerProcess,
        run_operator: Any, tmp_path: Path, eventually: Eventually) -> None:
    run_operator(broker_url=broker.url)
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(workload(namespace, CONSUMERS)))
    apply(control_plane, namespace, cr("Queue", QUEUE, {}))
    apply(control_plane, namespace, cr("ConsumerGroup", CONSUMERS, {
        "queue": QUEUE,
        "autoscaling": {"target": {"name": CONSUMERS}, "minReplicas": 0, "maxReplicas": 5,
                        "lagPerReplica": 10, "scaleDownStabilization": "0s",
                        "idleAfter": "2s"}}))

    def group_row() -> dict[str, str]:
        return table(control_plane, namespace, "cg").get(CONSUMERS) or {}

    # The group owns its HPA; the metrics API finds the group through its status.endpoint.
    hpa = eventually(lambda: get(control_plane, namespace, "hpa", CONSUMERS),
                     "the ConsumerGroup's HPA exists")
    group = get(control_plane, namespace, "cg", CONSUMERS)
    assert group is not None
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == group["metadata"]["uid"]
    with serving_metrics_api(control_plane, namespace, tmp_path, eventually):
        # Idle for idleAfter: the operator takes the target to zero, which the HPA cannot.
        eventually(lambda: replicas(control_plane, namespace, CONSUMERS) == 0,
                   "the idle group's workers scaled to zero")
        eventually(lambda: group_row().get("REPLICAS") == "0", "kubectl get cg shows 0")
        reasons = [reason for _, reason, _ in events(control_plane, namespace, CONSUMERS)]
        assert "ScaledToZero" in reasons

        # The first messages wake it (0 -> 1, the operator), the HPA takes it on to
        # ceil(25 / 10) = 3.
        publish(broker.url, QUEUE, 25)
        answer = _lag_through_the_aggregator(control_plane, namespace, f"group={CONSUMERS}")
        assert [(i["metricLabels"], i["value"]) for i in answer["items"]] == [
            ({"namespace": namespace, "queue": QUEUE, "group": CONSUMERS}, "25")]
        eventually(lambda: replicas(control_plane, namespace, CONSUMERS) == 3,
                   "3 workers for a lag of 25 at 10 per replica")
        eventually(lambda: group_row().get("REPLICAS") == "3", "kubectl get cg shows 3")
        assert "Activated" in [r for _, r, _ in events(control_plane, namespace, CONSUMERS)]

        # Drained: the HPA goes back to 1, then idleAfter later the operator to 0.
        assert drain(broker.url, QUEUE, CONSUMERS) == 25
        eventually(lambda: replicas(control_plane, namespace, CONSUMERS) == 0,
                   "back to zero once the backlog is worked off")


def test_a_pipelines_collectors_get_an_hpa_through_its_consumer_group(
        control_plane: ControlPlane, namespace: str, broker: BrokerProcess,
        run_operator: Any, eventually: Eventually) -> None:
    run_operator(broker_url=broker.url)
    apply(control_plane, namespace, cr("TelemetryPipeline", "gpu", {
        "streamer": {"source": {"configMap": {"name": "dcgm", "key": "sample.csv"}}},
        "collector": {"minReplicas": 2, "maxReplicas": 6, "lagPerReplica": 500}}))
    hpa = eventually(lambda: get(control_plane, namespace, "hpa", "gpu-collectors"),
                     "the pipeline's consumer group owns an HPA")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "gpu-collector"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["selector"]["matchLabels"] == {
        "queue": "gpu", "group": "gpu-collectors"}
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "500"}
    assert hpa["metadata"]["ownerReferences"][0]["kind"] == "ConsumerGroup"
