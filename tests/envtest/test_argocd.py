"""GitOps with the real Argo CD: its application-controller and repo-server (built here from
the Go module proxy) sync Ferry from this repository, served by a Git server on loopback,
into a control plane of their own, exactly as README's "GitOps with Argo CD" says: the
shipped argocd-cm (Ferry's Lua health checks), then `kubectl apply -k examples/gitops/`
with the repository parameter set. Pods run as local processes (the demo's kubelet);
brokers are reached the way `make demo` reaches them (the operator's broker override).

One scenario, in order: everything syncs and Argo CD reports Ferry's resources Healthy
through Ferry's Lua; a Queue whose broker cannot start (a commit) is Degraded in Argo CD,
and recovers after the fix (another commit); a paused Queue is Suspended; deleting the
install Application leaves the CRDs, the Queues and their volumes and messages alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.broker_process import BrokerProcess
from gitops import (
    ArgoCD,
    GitRepo,
    application,
    refresh,
    resource_health,
    sync_and_health,
)
from nodes import UNPULLABLE, Node
from operating import on_broker
from testsupport.ports import free_port

from ferry.broker.models import OutgoingMessage
from kubeplane import ControlPlane, start, stop

pytestmark = pytest.mark.argocd
ROOT = Path(__file__).resolve().parents[2]
APPS = ("ferry", "ferry-crds", "ferry-install", "ferry-examples")
QUEUE_FILE = "examples/queue.yaml"


@dataclass
class GitOps:
    plane: ControlPlane
    repo: GitRepo
    argocd: ArgoCD
    node: Node
    broker: BrokerProcess


@pytest.fixture(scope="module")
def gitops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitOps]:
    """A plane of its own (Ferry's install registers an APIService that would disturb the
    shared one), Argo CD on it, the repository served, pods running."""
    directory = tmp_path_factory.mktemp("gitops")
    plane = start(directory / "plane", die_with_parent=True)
    broker = BrokerProcess(directory / "broker-data", directory / "broker.log")
    repo: GitRepo | None = None
    argocd = ArgoCD(plane, directory / "argocd")
    node: Node | None = None
    old_path = os.environ["PATH"]
    try:
        broker.start()
        repo = GitRepo.serve(directory / "git")
        argocd.start()
        # The kubelet runs a container's command from PATH: this environment's scripts.
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{old_path}"
        in_cluster = {f"http://{q}-broker{suffix}:7070": broker.url
                      for q in ("orders", "gpu-telemetry")
                      for suffix in ("", ".ferry-demo.svc")}
        operator_port = free_port()
        node = Node(plane, ["ferry-system", "ferry-demo"], directory / "node",
                    services=in_cluster,
                    image_files={"/usr/share/ferry/examples": ROOT / "examples" / "data"},
                    fixed_ports={("operator", 8081): operator_port},
                    # The operator pod: the API server's address and credentials (a
                    # kubelet's service-account mount), brokers as `make demo` reaches
                    # them, its probe port on loopback.
                    env={"ferry-system": {
                        "KUBECONFIG": str(plane.kubeconfig), "FERRY_BROKER_URL": broker.url,
                        "FERRY_METRICS_HOST": "127.0.0.1",
                        "FERRY_METRICS_PORT": str(operator_port)}})
        yield GitOps(plane, repo, argocd, node, broker)
    finally:
        print(argocd.tails())
        argocd.stop()
        if node is not None:
            node.stop()
        if repo is not None:
            repo.server.stop()
        os.environ["PATH"] = old_path
        broker.kill()
        stop(directory / "plane")


def until(env: GitOps, eventually: Any, probe: Any, what: str, timeout: float = 600) -> Any:
    """`eventually`, with pods running and Argo CD's servers checked on every poll."""
    def step() -> Any:
        env.argocd.check()
        env.node.sync()
        return probe()
    return eventually(step, what, timeout=timeout)


def app_is(env: GitOps, name: str, sync: str, health: str) -> bool:
    return sync_and_health(application(env.plane, name)) == (sync, health)


@pytest.mark.timeout(1800)  # a liveness bound for a whole GitOps scenario on 2 cores
def test_argocd_syncs_ferry_and_judges_it_with_ferrys_lua(gitops: GitOps,
                                                          eventually: Any) -> None:
    env, kubectl = gitops, gitops.plane.kubectl
    # README, "GitOps with Argo CD", in the served checkout (whose repo.yaml names it).
    kubectl("-n", "argocd", "patch", "configmap", "argocd-cm", "--patch-file",
            str(env.repo.work / "examples" / "gitops" / "argocd-cm-patch.yaml"))
    kubectl("apply", "-n", "argocd", "-k", str(env.repo.work / "examples" / "gitops"))
    until(env, eventually, lambda: app_is(env, "ferry-crds", "Synced", "Healthy"),
          "Argo CD reports ferry-crds Synced and Healthy")
    until(env, eventually,
          lambda: sync_and_health(application(env.plane, "ferry-examples"))[0] == "Synced",
          "Argo CD synced ferry-examples (after the CRDs and the install)")
    for kind, name in (("Queue", "orders"), ("ConsumerGroup", "orders-workers")):
        until(env, eventually,
              lambda k=kind, n=name: resource_health(application(env.plane, "ferry-examples"),
                                                     k, n)[0] == "Healthy",
              f"Argo CD reports {kind} {name} Healthy (Ferry's Lua from argocd-cm)")
    assert sync_and_health(application(env.plane, "ferry-install"))[0] == "Synced"
    assert sync_and_health(application(env.plane, "ferry"))[0] == "Synced"

    # A Queue whose broker cannot start: Degraded in Argo CD, through Ferry's Lua.
    released = kubectl("get", "-n", "ferry-demo", "queue", "orders", "-o",
                       "jsonpath={.spec.broker.image}").stdout
    docs = list(yaml.safe_load_all(env.repo.read(QUEUE_FILE)))

    def with_broker_image(image: str) -> str:
        docs[0]["spec"].setdefault("broker", {})["image"] = image
        return yaml.safe_dump_all(docs)
    env.repo.commit(QUEUE_FILE, with_broker_image(f"{UNPULLABLE}ferry:missing"),
                    "orders: a broker image that no registry has")
    refresh(env.plane, "ferry-examples")

    def degraded() -> str | None:
        health, message = resource_health(application(env.plane, "ferry-examples"), "Queue",
                                          "orders")
        return message if health == "Degraded" else None
    message = until(env, eventually, degraded, "Argo CD reports the Queue Degraded")
    assert "ImagePullBackOff" in message or "ErrImagePull" in message

    # Fixed in Git: Healthy again.
    # Said explicitly: a field dropped from Git keeps its last applied value under
    # server-side apply when the CRD defaults it, so a revert that removes it fixes nothing.
    env.repo.commit(QUEUE_FILE, with_broker_image(released),
                    "orders: back to the released broker image")
    refresh(env.plane, "ferry-examples")
    until(env, eventually, lambda: resource_health(application(env.plane, "ferry-examples"),
                                                   "Queue", "orders")[0] == "Healthy",
          "Argo CD reports the fixed Queue Healthy")

    # Paused for an incident: Suspended in Argo CD; resumed: Healthy.
    kubectl("annotate", "-n", "ferry-demo", "queue", "orders", "ferry.dev/reconcile=paused")
    refresh(env.plane, "ferry-examples")
    until(env, eventually, lambda: resource_health(application(env.plane, "ferry-examples"),
                                                   "Queue", "orders")[0] == "Suspended",
          "Argo CD reports the paused Queue Suspended")
    kubectl("annotate", "-n", "ferry-demo", "queue", "orders", "ferry.dev/reconcile-")
    refresh(env.plane, "ferry-examples")
    until(env, eventually, lambda: resource_health(application(env.plane, "ferry-examples"),
                                                   "Queue", "orders")[0] == "Healthy",
          "Argo CD reports the resumed Queue Healthy")


@pytest.mark.timeout(900)
def test_deleting_the_install_keeps_crds_queues_and_their_data(gitops: GitOps,
                                                               eventually: Any) -> None:
    env, kubectl = gitops, gitops.plane.kubectl
    on_broker(env.broker.url, lambda c: c.publish("orders", [OutgoingMessage(body="keep me")]))
    before = on_broker(env.broker.url, lambda c: c.queue_stats("orders")).messages
    claims = kubectl("get", "pvc", "-n", "ferry-demo", "-o", "name").stdout.split()
    assert "persistentvolumeclaim/data-orders-broker-0" in claims
    uid = kubectl("get", "-n", "argocd", "application", "ferry-install", "-o",
                  "jsonpath={.metadata.uid}").stdout
    # The root Application (selfHeal) puts ferry-install back afterwards; the cascade (its
    # resources finalizer) runs first, deleting the operator and everything it installed.
    kubectl("delete", "-n", "argocd", "application", "ferry-install", "--wait=false")
    until(env, eventually, lambda: kubectl(
        "get", "-n", "argocd", "application", "ferry-install", "-o",
        "jsonpath={.metadata.uid}", check=False).stdout.strip() not in ("", uid),
        "ferry-install and its resources are deleted (and put back by the root)")
    for crd in ("queues.ferry.dev", "consumergroups.ferry.dev", "telemetrypipelines.ferry.dev"):
        kubectl("get", "crd", crd)  # fails if Argo CD deleted it
    kubectl("get", "-n", "ferry-demo", "queue", "orders")
    assert kubectl("get", "pvc", "-n", "ferry-demo", "-o", "name").stdout.split() == claims
    assert on_broker(env.broker.url, lambda c: c.queue_stats("orders")).messages == before
