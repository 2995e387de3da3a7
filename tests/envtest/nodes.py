"""Pods that run: the demo's process kubelet (scripts/ferrydemo) for a test's namespaces.

`Node(plane, namespaces, workdir)` registers the kubelet's Node and runs the namespaces'
pods as local processes while `syncing()` is active (a background thread), or one pass at
a time with `sync()`; a test that wants a rollout to wait simply stops syncing. The
`process_kubelet` fixture (conftest.py) starts one for the test's namespace. Images
under `registry.invalid/` cannot be pulled: their pods wait in ImagePullBackOff, as a
kubelet reports them. A pod given a stand-in (e.g. PostgreSQL's, served by a local
PostgreSQL) is reported Running, Ready while the stand-in accepts connections. `ports()`
is a running pod's local port for a containerPort (what a Service routes to); `claim()`
the folder holding a PersistentVolumeClaim's files. `stop()` ends every pod process and
removes the Node.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from testsupport.repeating import repeating

from ferrydemo.kubelet import NODE_NAME, Kubelet
from ferrydemo.pods import claim_folder
from ferrydemo.supervising import Supervisor

UNPULLABLE = "registry.invalid/"


class Node:
    def __init__(self, plane: Any, namespaces: Sequence[str], workdir: Path,
                 services: Mapping[str, str] | None = None,
                 fixed_ports: Mapping[tuple[str, int], int] | None = None,
                 image_files: Mapping[str, Path] | None = None,
                 env: Mapping[str, Mapping[str, str]] | None = None,
                 stand_ins: Mapping[str, str] | None = None, grace: float = 15.0) -> None:
        """`env`: per namespace, environment the node gives its pods' processes (what a
        cluster would: API credentials, addresses); `stand_ins`: pod name -> host:port of
        a local server doing that pod's work (its image cannot run here); `grace`: a stopped
        pod's time between SIGTERM and SIGKILL."""
        self.api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(plane.kubeconfig))
        self.supervisor = Supervisor(workdir / "pods", grace=grace)
        self.core = core = client.CoreV1Api(self.api)
        self.kubelets = [
            Kubelet(core=core, namespace=ns, supervisor=self.supervisor,
                    volumes=workdir / "volumes", image_files=dict(image_files or {}),
                    services=dict(services or {}), fixed_ports=dict(fixed_ports or {}),
                    say=lambda line: None,
                    pullable=lambda image: not image.startswith(UNPULLABLE),
                    env=dict((env or {}).get(ns, {})), stand_ins=dict(stand_ins or {}))
            for ns in namespaces]
        self.kubelets[0].register()
        self.lock = threading.Lock()

    def sync(self) -> None:
        with self.lock:
            for kubelet in self.kubelets:
                with suppress(ApiException):  # the API server was busy: the next pass retries
                    kubelet.sync()

    def ports(self, pod: str, container_port: int) -> list[int]:
        """The local port of `pod`'s containerPort while its process runs, else none (read
        from other threads: list() copies the kubelets' dicts in one step)."""
        return [local.ports[container_port] for kubelet in self.kubelets
                for local in list(kubelet.containers.values())
                if local.pod == pod and local.child is not None
                and container_port in local.ports]

    def claim(self, name: str) -> Path:
        return claim_folder(self.kubelets[0].volumes, name)

    def syncing(self, every: float = 0.5) -> AbstractContextManager[None]:
        return repeating(self.sync, every, "the process kubelet")

    def stop(self) -> None:
        with self.lock:
            for kubelet in self.kubelets:
                kubelet.stop_all()
            self.supervisor.stop_all()
        with suppress(ApiException):  # pods bound to a missing node are garbage-collected
            self.core.delete_node(NODE_NAME)
        self.api.close()
