"""Helpers for the operator's envtest tests: apply CRs, read objects, call the broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ferry.broker.client import BrokerClient, NotFound
from ferry.broker.models import OutgoingMessage
from ferry.telemetry.parsing.messages import body_of
from ferry.telemetry.parsing.rows import TelemetryRow

T = TypeVar("T")
MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "operator"
OPERATOR_ACCOUNT = ("ferry-system", "ferry-operator")  # manifests/operator: its ServiceAccount


def cr(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": kind, "metadata": {"name": name},
            "spec": spec}


def apply(plane: Any, namespace: str, manifest: dict[str, Any], check: bool = True) -> Any:
    """kubectl apply; with check=False the result (returncode, stderr) of a refused one."""
    return plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest),
                         check=check)


def get(plane: Any, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = plane.kubectl("get", "-n", namespace, kind, name, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def table(plane: Any, namespace: str, resource: str) -> dict[str, dict[str, str]]:
    """`kubectl get <resource>` as {name: {COLUMN: value}} (the printer columns)."""
    lines = plane.kubectl("get", "-n", namespace, resource).stdout.splitlines()
    header = lines[0].split()
    return {row.split()[0]: dict(zip(header, row.split(), strict=False)) for row in lines[1:]}


def condition(obj: dict[str, Any] | None, kind: str) -> tuple[str, str] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return c["status"], c.get("reason", "")
    return None


def reconciled(plane: Any, namespace: str, kind: str, name: str) -> bool:
    """Ready after a pass that reached the broker: for a ConsumerGroup, the group exists
    there (status.endpoint alone says only which broker serves its queue)."""
    return condition(get(plane, namespace, kind, name), "Ready") == ("True", "Reconciled")


def events(plane: Any, namespace: str, name: str) -> list[tuple[str, str, str]]:
    found = plane.kubectl_json("get", "events", "-n", namespace,
                               "--field-selector", f"involvedObject.name={name}")
    return [(e["type"], e["reason"], e["message"]) for e in found["items"]]


def queue_and_group_at_zero(plane: Any, namespace: str, eventually: Callable[..., Any],
                            queue: str, group: str) -> None:
    """A Queue, then a ConsumerGroup scaling `group` between 0 and 3, both Ready.

    The group waits for its Queue's pass (its token Secret): a group reconciled first sees
    the Queue only at its stats timer, which the wake tests set to an hour. kopf's first
    listings of new CRDs may answer 429 and retry in either order, so the order is forced.
    """
    apply(plane, namespace, cr("Queue", queue, {}))
    eventually(lambda: reconciled(plane, namespace, "queue", queue), "the queue is on its broker")
    apply(plane, namespace, cr("ConsumerGroup", group, {
        "queue": queue, "autoscaling": {"target": {"name": group}, "minReplicas": 0,
                                        "maxReplicas": 3}}))
    eventually(lambda: reconciled(plane, namespace, "cg", group), "the group is on its broker")


def workload(namespace: str, name: str, replicas: int = 1) -> dict[str, Any]:
    """A Deployment to scale (without a kubelet its pods are created, never run)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                {"name": "worker", "image": "registry.k8s.io/pause:3.10"}]}},
        },
    }


def collectors(namespace: str, name: str, broker_url: str, queue: str, replicas: int,
               hold: bool = False, max_in_flight: int | None = None) -> dict[str, Any]:
    """A Deployment of ferry-collectors the process kubelet runs, each consumer named after
    its pod (as the operator's deletion costs expect). With `hold`, a batch never fills or
    times out: each collector holds every lease it gets until it is told to stop;
    `max_in_flight` caps the leases each holds (which spreads messages over them)."""
    manifest = workload(namespace, name, replicas=replicas)
    batching = ["--batch-size", "1000", "--flush-interval", "3600"] if hold else []
    if max_in_flight is not None:
        batching += ["--max-in-flight", str(max_in_flight)]
    manifest["spec"]["template"]["spec"] = {
        "terminationGracePeriodSeconds": 30,
        "volumes": [{"name": "data", "emptyDir": {}}],
        "containers": [{
            "name": "collector", "image": "ferry:dev", "command": ["ferry-collector"],
            "args": ["--broker-url", broker_url, "--queue", queue, "--group", name,
                     "--consumer", "$(POD_NAME)", "--storage", "sqlite:///data/telemetry.db",
                     *batching],
            "env": [{"name": "POD_NAME",
                     "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        }],
    }
    return manifest


def telemetry_rows(first: int, count: int) -> list[OutgoingMessage]:
    """Messages a collector stores: one telemetry row each, numbered from `first`."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return [OutgoingMessage(body=body_of(TelemetryRow.model_validate({
        "timestamp": at + timedelta(seconds=n), "metric_name": "DCGM_FI_DEV_GPU_UTIL",
        "gpu_id": 0, "device": "nvidia0", "uuid": f"GPU-{n:08x}-0000-0000-0000-000000000000",
        "modelName": "H100", "Hostname": "node-1", "value": float(n)})))
        for n in range(first, first + count)]


def replicas(plane: Any, namespace: str, deployment: str) -> int:
    """A Deployment's spec.replicas, as the autoscalers set it."""
    found = plane.kubectl_json("get", "deployment", deployment, "-n", namespace)
    return int(found["spec"].get("replicas", 0))


def on_broker(url: str, call: Callable[[BrokerClient], Awaitable[T]],
              token: str | None = None) -> T:
    async def run() -> T:
        async with BrokerClient(url, token=token, retries=1, timeout=10) as client:
            return await call(client)
    return asyncio.run(run())


def publish(url: str, queue: str, count: int) -> None:
    messages = [OutgoingMessage(body={"n": n}) for n in range(count)]
    on_broker(url, lambda c: c.publish(queue, messages))


def drain(url: str, queue: str, group: str) -> int:
    """Receive and ack everything the group has ready; how many messages that was."""
    async def run(client: BrokerClient) -> int:
        done = 0
        while deliveries := await client.receive(queue, group, "drainer", max=100):
            await client.ack(queue, group, [d.receipt for d in deliveries])
            done += len(deliveries)
        return done
    return on_broker(url, run)


def broker_queues(url: str) -> dict[str, int]:
    """Queue name -> stored messages, straight from the broker."""
    stats = on_broker(url, lambda c: c.list_queues())
    return {q.queue: q.messages for q in stats}


def queue_missing(url: str, queue: str) -> bool:
    async def probe(client: BrokerClient) -> bool:
        try:
            await client.queue_stats(queue)
        except NotFound:
            return True
        return False
    return on_broker(url, probe)


def service_account_kubeconfig(plane: Any, directory: Path) -> Path:
    """A kubeconfig holding a token of the ferry-operator ServiceAccount, bound by rbac.yaml."""
    namespace, account = OPERATOR_ACCOUNT
    if plane.kubectl("get", "namespace", namespace, check=False).returncode != 0:
        plane.kubectl("create", "namespace", namespace)
    for manifest in ("serviceaccount.yaml", "rbac.yaml"):
        plane.kubectl("apply", "-n", namespace, "-f", str(MANIFESTS / manifest))
    token = plane.kubectl("create", "token", account, "-n", namespace,
                          "--duration=1h").stdout.strip()
    admin = yaml.safe_load(Path(plane.kubeconfig).read_text())
    cluster = admin["clusters"][0]
    config = {"apiVersion": "v1", "kind": "Config", "clusters": [cluster],
              "users": [{"name": account, "user": {"token": token}}],
              "contexts": [{"name": "sa", "context": {"cluster": cluster["name"],
                                                      "user": account}}],
              "current-context": "sa"}
    path = directory / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path
