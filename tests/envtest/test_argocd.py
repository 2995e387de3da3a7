"""GitOps with the real Argo CD: its application-controller and repo-server (built here from
the Go module proxy, with Redis from Debian) sync Ferry from this repository, served by
`git daemon` on loopback, into a control plane of their own, exactly as the "GitOps with
Argo CD" section of docs/operations.md says: the shipped argocd-cm (Ferry's Lua health
checks), then `kubectl apply -k examples/gitops/` with the repository parameter set.

Pods run as local processes (the demo's process kubelet), each broker pod on its claim's
folder; the example PostgreSQL's pod is served by a local PostgreSQL. Each queue's broker
Service is a ThreadedService in front of its broker pod (the pods reach it by the Service's
URL); the operator, whose broker override is the only way it reaches a broker outside a
cluster, reaches them through a QueueRouter (each request to the pod of the queue it names).

One scenario, in order: every Application Synced and Healthy as Argo CD reports it, with
the Queue, ConsumerGroup and TelemetryPipeline Healthy through Ferry's Lua; a commit gives
the Queue a broker that cannot start: Degraded; `git revert` of it: everything Healthy
again; the Queue paused (ferry.dev/reconcile: paused): Suspended, resumed: Healthy; the
install Application deleted: the CRDs, the custom resources, the broker's volume (claim and
folder) and the queue's messages stay, and the root Application puts the install back,
Healthy; the broker pod deleted, the StatefulSet's new pod on the same claim serves the very
messages published through the first one.
"""

from __future__ import annotations

import base64
import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from gitops import ArgoCD, GitRepo, application, refresh, resource_health, sync_and_health
from nodes import UNPULLABLE, Node
from operating import condition, get, on_broker
from testsupport.ports import free_port
from testsupport.services import QueueRouter, Threaded, ThreadedService
from testsupport.waiting import GaveUpError

from ferry.broker.client import BrokerClient
from ferry.broker.models import OutgoingMessage
from ferry.operator.reconcile.queues import BROKER_PORT, broker_name
from ferrydemo import postgres
from ferrydemo.running import database_address
from ferrydemo.supervising import Supervisor
from kubeplane import ControlPlane, start, stop

pytestmark = pytest.mark.argocd
ROOT = Path(__file__).resolve().parents[2]
APPS = ("ferry", "ferry-crds", "ferry-install", "ferry-examples")
CUSTOM = (("Queue", "orders"), ("ConsumerGroup", "orders-workers"),
          ("TelemetryPipeline", "gpu-telemetry"))
QUEUE_FILE = "examples/queue.yaml"
QUEUES = ("orders", "gpu-telemetry")  # the example Queue and the pipeline's
CRDS = ("queues.ferry.dev", "consumergroups.ferry.dev", "telemetrypipelines.ferry.dev")
DAY_MS = 24 * 3600 * 1000
PATIENCE = 900.0  # a liveness bound per step on a loaded 2-core machine, not a timing check


@dataclass
class GitOps:
    plane: ControlPlane
    repo: GitRepo
    argocd: ArgoCD
    node: Node
    services: dict[str, str]  # queue -> its broker Service's local URL


@pytest.fixture(scope="module")
def gitops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitOps]:
    """A plane of its own (Ferry's install registers cluster-wide objects that would disturb
    the shared one), Argo CD on it, the repository served, pods running."""
    directory = tmp_path_factory.mktemp("gitops")
    # PostgreSQL runs as the postgres user under root: a folder it can reach (see postgres).
    pg_dir = Path(tempfile.mkdtemp(prefix="ferry-argocd-pg-"))
    stand_ins = Supervisor(directory / "stand-ins")
    plane = start(directory / "plane", die_with_parent=True)
    repo: GitRepo | None = None
    argocd = ArgoCD(plane, directory / "argocd")
    node: Node | None = None
    servers: list[Threaded] = []
    ports = {queue: free_port() for queue in QUEUES}  # each queue's broker Service
    services = {queue: f"http://127.0.0.1:{port}" for queue, port in ports.items()}
    router = free_port()  # the operator's broker override
    old_path = os.environ["PATH"]
    try:
        pg_port = free_port()
        postgres.start(stand_ins, pg_dir, pg_port)
        database = f"127.0.0.1:{pg_port}"
        repo = GitRepo.serve(directory / "git")
        argocd.start()
        # The kubelet runs a container's command from PATH: this environment's scripts.
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{old_path}"
        urls = {f"http://{broker_name(q)}{suffix}:{BROKER_PORT}": services[q]
                for q in QUEUES for suffix in ("", ".ferry-demo.svc")}
        urls[database_address(ROOT)] = database
        operator_port = free_port()
        node = Node(plane, ["ferry-system", "ferry-demo"], directory / "node",
                    services=urls,
                    image_files={"/usr/share/ferry/examples": ROOT / "examples" / "data"},
                    fixed_ports={("operator", 8081): operator_port},
                    # The operator pod: the API server's address and credentials (a
                    # kubelet's service-account mount), the broker pods through the
                    # router, its probe port on loopback.
                    env={"ferry-system": {
                        "KUBECONFIG": str(plane.kubeconfig),
                        "FERRY_BROKER_URL": f"http://127.0.0.1:{router}",
                        "FERRY_METRICS_HOST": "127.0.0.1",
                        "FERRY_METRICS_PORT": str(operator_port)}},
                    stand_ins={"telemetry-db-0": database})
        pods = node

        def broker_ports(queue: str) -> list[int]:
            """Its broker pod's port while the pod's process runs (a Service's endpoint)."""
            return pods.ports(f"{broker_name(queue)}-0", BROKER_PORT)
        servers += [ThreadedService(ports[q], functools.partial(broker_ports, q)).start()
                    for q in QUEUES]
        servers.append(Threaded(router, QueueRouter(broker_ports)).start())
        yield GitOps(plane, repo, argocd, node, services)
    finally:
        print(argocd.tails())
        argocd.stop()
        for server in servers:
            server.stop()
        if node is not None:
            node.stop()
        if repo is not None:
            repo.server.stop()
        os.environ["PATH"] = old_path
        stand_ins.stop_all()
        shutil.rmtree(pg_dir, ignore_errors=True)
        stop(directory / "plane")


def states(env: GitOps) -> str:
    """Every Application's sync and health, and the custom resources' health, as Argo CD
    reports them (what a failed wait prints)."""
    lines = [f"{name}: {sync_and_health(application(env.plane, name))}" for name in APPS]
    examples = application(env.plane, "ferry-examples")
    lines += [f"{kind} {name}: {resource_health(examples, kind, name)}" for kind, name in CUSTOM]
    return "\n".join(lines)


def until(env: GitOps, eventually: Callable[..., Any], probe: Callable[[], Any],
          what: str) -> Any:
    """`eventually`, with pods running and Argo CD's servers checked on every poll."""
    def step() -> Any:
        env.argocd.check()
        env.node.sync()
        return probe()
    try:
        return eventually(step, what, timeout=PATIENCE)
    except GaveUpError as error:
        raise GaveUpError(f"{error}\n{states(env)}") from None


def health(env: GitOps, kind: str, name: str) -> tuple[str, str]:
    """Argo CD's health of one of the example custom resources: (status, message)."""
    return resource_health(application(env.plane, "ferry-examples"), kind, name)


def all_synced_and_healthy(env: GitOps) -> bool:
    return (all(sync_and_health(application(env.plane, name)) == ("Synced", "Healthy")
                for name in APPS)
            and all(health(env, kind, name)[0] == "Healthy" for kind, name in CUSTOM))


def install(env: GitOps, eventually: Callable[..., Any]) -> None:
    """The README's sequence (docs/operations.md, "GitOps with Argo CD"), in the served
    checkout whose repo.yaml names it; then Argo CD reports everything Synced and Healthy."""
    kubectl = env.plane.kubectl
    kubectl("-n", "argocd", "patch", "configmap", "argocd-cm", "--patch-file",
            str(env.repo.work / "examples" / "gitops" / "argocd-cm-patch.yaml"))
    kubectl("apply", "-n", "argocd", "-k", str(env.repo.work / "examples" / "gitops"))
    until(env, eventually, lambda: all_synced_and_healthy(env),
          "every Application Synced and Healthy, and the Queue, ConsumerGroup and "
          "TelemetryPipeline Healthy (Ferry's Lua from argocd-cm)")


@pytest.mark.timeout(3600)  # a liveness bound for the whole scenario on a loaded machine
def test_argocd_syncs_ferry_and_judges_it_with_ferrys_lua(gitops: GitOps,
                                                          eventually: Callable[..., Any]) -> None:
    env, kubectl = gitops, gitops.plane.kubectl
    install(env, eventually)

    # A commit gives the Queue a broker that cannot start: Degraded, through Ferry's Lua.
    docs = list(yaml.safe_load_all(env.repo.read(QUEUE_FILE)))
    docs[0]["spec"]["broker"] = {"image": f"{UNPULLABLE}ferry:missing"}
    broken = env.repo.commit(QUEUE_FILE, yaml.safe_dump_all(docs),
                             "orders: a broker image that no registry has")
    refresh(env.plane, "ferry-examples")

    # Degraded for the reason: the pod's image pull (a moment of "broker unreachable" as the
    # old pod goes is the operator's to call starting; unit-tested in test_kstatus_conditions).
    def degraded() -> str | None:
        status, message = health(env, "Queue", "orders")
        app = sync_and_health(application(env.plane, "ferry-examples"))
        pulling = "ImagePullBackOff" in message or "ErrImagePull" in message
        return message if status == "Degraded" and pulling and app == (
            "Synced", "Degraded") else None
    until(env, eventually, degraded, "Argo CD reports the Queue, and so ferry-examples, "
          "Degraded, with the broker pod's image pull failure in the message")

    # `git revert` of that commit: the field it added is gone again, everything Healthy.
    env.repo.revert(broken)
    refresh(env.plane, "ferry-examples")
    until(env, eventually, lambda: all_synced_and_healthy(env),
          "every Application Synced and Healthy after the revert")
    queue = get(env.plane, "ferry-demo", "queue", "orders")
    assert queue is not None and "image" not in queue["spec"]["broker"], queue["spec"]

    # Paused for an incident: Suspended in Argo CD (still Synced); resumed: Healthy.
    kubectl("annotate", "-n", "ferry-demo", "queue", "orders", "ferry.dev/reconcile=paused")
    refresh(env.plane, "ferry-examples")
    until(env, eventually, lambda: health(env, "Queue", "orders")[0] == "Suspended",
          "Argo CD reports the paused Queue Suspended")
    assert sync_and_health(application(env.plane, "ferry-examples"))[0] == "Synced"
    kubectl("annotate", "-n", "ferry-demo", "queue", "orders", "ferry.dev/reconcile-")
    refresh(env.plane, "ferry-examples")
    until(env, eventually, lambda: all_synced_and_healthy(env),
          "every Application Synced and Healthy after the Queue is resumed")


def stored(url: str, queue: str, token: str) -> list[tuple[str, Any]]:
    """The queue's stored messages (id, body), read through the broker at `url`."""
    async def browse(client: BrokerClient) -> list[tuple[str, Any]]:
        return [(m.id, m.body) async for m in client.browse_all(queue)]
    return on_broker(url, browse, token)


def broker_pod(env: GitOps) -> str | None:
    """The uid of orders' broker pod once it runs and is Ready."""
    pod = get(env.plane, "ferry-demo", "pod", "orders-broker-0")
    return pod["metadata"]["uid"] if pod and condition(pod, "Ready") == ("True", "") else None


@pytest.mark.timeout(3600)
def test_deleting_the_install_keeps_crds_queues_and_their_data(
        gitops: GitOps, eventually: Callable[..., Any]) -> None:
    env, kubectl = gitops, gitops.plane.kubectl
    install(env, eventually)  # a no-op after the scenario above; the same start alone
    # Published through orders' Service to its broker pod; due in a day: the example's
    # worker (orders-worker) cannot consume it before the end.
    orders = env.services["orders"]
    token = base64.b64decode(kubectl("get", "secret", "-n", "ferry-demo", "orders-broker-token",
                                     "-o", "jsonpath={.data.token}").stdout).decode()
    on_broker(orders, lambda c: c.publish("orders", [OutgoingMessage(body="keep me",
                                                                     delay_ms=DAY_MS)]), token)
    before = stored(orders, "orders", token)
    assert "keep me" in [body for _, body in before], before
    claim = kubectl("get", "pvc", "-n", "ferry-demo", "data-orders-broker-0", "-o",
                    "jsonpath={.metadata.uid}").stdout
    folder = env.node.claim("data-orders-broker-0")
    assert any(folder.iterdir()), f"the broker pod wrote nothing to its claim's {folder}"
    custom = {kind: kubectl("get", "-n", "ferry-demo", kind, name, "-o",
                            "jsonpath={.metadata.uid}").stdout for kind, name in CUSTOM}
    uid = kubectl("get", "-n", "argocd", "application", "ferry-install", "-o",
                  "jsonpath={.metadata.uid}").stdout
    # Its resources finalizer deletes the operator, its namespace and RBAC first; then the
    # root Application (selfHeal) puts ferry-install back.
    kubectl("delete", "-n", "argocd", "application", "ferry-install", "--wait=false")
    until(env, eventually, lambda: kubectl(
        "get", "-n", "argocd", "application", "ferry-install", "-o",
        "jsonpath={.metadata.uid}", check=False).stdout.strip() not in ("", uid),
        "ferry-install and its resources deleted, and ferry-install put back by the root")
    for crd in CRDS:
        kubectl("get", "crd", crd)  # fails if Argo CD deleted it
    # The very same custom resources and claim (not recreated), the claim's folder.
    assert {kind: kubectl("get", "-n", "ferry-demo", kind, name, "-o",
                          "jsonpath={.metadata.uid}").stdout
            for kind, name in CUSTOM} == custom
    assert kubectl("get", "pvc", "-n", "ferry-demo", "data-orders-broker-0", "-o",
                   "jsonpath={.metadata.uid}").stdout == claim
    until(env, eventually, lambda: all_synced_and_healthy(env),
          "every Application Synced and Healthy with the install back")
    # The messages are on the volume, not only in the broker's memory: the broker pod
    # deleted, the StatefulSet's new pod, on the same claim, serves the same messages.
    first = until(env, eventually, lambda: broker_pod(env), "orders' broker pod Ready")
    kubectl("delete", "pod", "-n", "ferry-demo", "orders-broker-0", "--wait=false")
    until(env, eventually, lambda: broker_pod(env) not in (None, first),
          "orders' broker pod back, Ready, on its claim")
    assert stored(orders, "orders", token) == before
    until(env, eventually, lambda: all_synced_and_healthy(env),
          "every Application Synced and Healthy with the new broker pod")
