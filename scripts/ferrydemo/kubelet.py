"""A stand-in kubelet for the demo's control plane, which has none.

It watches the pods of one namespace and does for them what a kubelet would: binds them
to this machine, runs the container as a local process (see `pods`), reports the pod
Running and Ready (so ReplicaSets, StatefulSets, Deployments, the HPA and Ferry's status
see real figures), restarts a crashed container with backoff, and on deletion stops the
process and releases the pod. Pods whose container cannot run here (an image without a
command, such as PostgreSQL's) are left Pending, unless the kubelet is given a stand-in
for that pod (`stand_ins`: pod name -> host:port of a local server doing its work, e.g. a
PostgreSQL started beside it): such a pod is reported Running, and Ready while its
stand-in accepts connections, as a kubelet's TCP readiness probe would.
A container is reported `started` only once its httpGet startupProbe (if any) answered,
as a kubelet reports it; its readiness counts only from then.
A kubelet given `pullable` reports a pod whose image that refuses as a real kubelet reports
an image it cannot pull: waiting in ErrImagePull, then ImagePullBackOff, never started.
A pod whose Secret or ConfigMap (or key) does not exist yet waits in
CreateContainerConfigError and starts once it does, as with a kubelet.

Deliberate difference from a kubelet: a container that exits 0 is not restarted (a
streamer that finished its input stays finished).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import itertools
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from testsupport.ports import lasting_port
from testsupport.processes import Process
from testsupport.waiting import answers

from ferrydemo.pods import MissingReferenceError, Node, local_pod
from ferrydemo.supervising import Supervisor

NODE_NAME = "ferry-demo-node"
COMPONENT = "app.kubernetes.io/component"
POD_INDEX = "apps.kubernetes.io/pod-index"
HEARTBEAT_SECONDS = 10.0
RESTART_BACKOFF = 2.0
CRASH_LIMIT = 3


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.cache
def _flags(command: str) -> frozenset[str]:
    """The long options `command --help` lists (its parser is the source of truth)."""
    out = subprocess.run([command, "--help"], capture_output=True, text=True, check=False)
    return frozenset(re.findall(r"(--[a-z][a-z0-9-]*)", out.stdout))


def _loopback(argv: list[str]) -> list[str]:
    """Pods share this machine's network: bind listeners to 127.0.0.1, and give an
    optional metrics port that would default to the same number in every pod a free one."""
    flags = _flags(argv[0])
    extra: list[str] = []
    for flag in ("--host", "--http-host", "--metrics-host", "--bind-address"):
        if flag in flags and flag not in argv:
            extra += [flag, "127.0.0.1"]
    if "--http-port" in flags and "--http-port" not in argv:
        extra += ["--http-port", str(lasting_port())]
    return [*argv, *extra]


def _container_id(local: LocalContainer) -> str:
    if local.child is not None:
        return f"local://{local.child.pid}"
    return f"stand-in://{local.stand_in}" if local.stand_in else ""


def _status(pod: Mapping[str, Any], phase: str, conditions: list[tuple[str, str, str]],
            **container: Any) -> dict[str, Any]:
    """A pod status: `conditions` as (type, status, lastTransitionTime), then the fields of
    its one container's status (ready, started, restartCount, state, ...)."""
    spec = pod["spec"]["containers"][0]
    return {"phase": phase, "hostIP": "127.0.0.1",
            "conditions": [{"type": kind, "status": value, "lastTransitionTime": at}
                           for kind, value, at in conditions],
            "containerStatuses": [{"name": spec["name"], "image": spec.get("image", ""),
                                   "imageID": "", **container}]}


def _http_probe(container: Mapping[str, Any], kind: str,
                ports: Mapping[int, int]) -> tuple[int, str] | None:
    """The local port and path of the container's httpGet `kind` (readinessProbe, ...)."""
    probe = (container.get(kind) or {}).get("httpGet")
    if not probe:
        return None
    port = probe["port"]
    if isinstance(port, str):  # a named container port
        port = next(p["containerPort"] for p in container.get("ports", []) if p.get("name") == port)
    return ports.get(int(port), int(port)), str(probe.get("path", "/"))


@dataclass
class LocalContainer:
    pod: str
    component: str
    child: Process | None
    ports: dict[int, int]
    readiness: tuple[int, str] | None     # local port and path of an httpGet readiness probe
    startup: tuple[int, str] | None = None  # the same of an httpGet startup probe
    probed: bool = False  # the startup probe passed since the process started
    started: str = field(default_factory=_now)
    first_started: float = field(default_factory=time.time)  # epoch s; kept on restarts
    restarts: int = 0
    exit_code: int | None = None
    retry_at: float = 0.0
    reported: str = ""
    stand_in: str | None = None   # host:port of the local server doing this pod's work


@dataclass
class Kubelet:
    core: client.CoreV1Api
    namespace: str
    supervisor: Supervisor
    volumes: Path
    image_files: Mapping[str, Path]
    services: dict[str, str]
    fixed_ports: Mapping[tuple[str, int], int]    # (component label, containerPort) -> port
    say: Callable[[str], None]
    coordination: client.CoordinationV1Api | None = None
    pullable: Callable[[str], bool] = lambda image: True   # images this node can pull
    env: Mapping[str, str] = field(default_factory=dict)   # what the node gives every pod
    stand_ins: Mapping[str, str] = field(default_factory=dict)  # pod name -> host:port
    containers: dict[str, LocalContainer] = field(default_factory=dict)  # by pod uid
    last_heartbeat: float = 0.0
    refused: dict[str, str] = field(default_factory=dict)                # pod uid -> why

    def _list(self, kind: str) -> list[dict[str, Any]]:
        """Plain JSON (the client's models add nothing here): kind is pod, secret, config_map."""
        method = getattr(self.core, f"list_namespaced_{kind}")
        response: Any = method(self.namespace, _preload_content=False)
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items

    def _node_status(self) -> dict[str, Any]:
        now, resources = _now(), {"cpu": "2", "memory": "8Gi", "pods": "110"}
        return {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "the demo runs this node's pods as local processes",
                                "lastHeartbeatTime": now, "lastTransitionTime": now}],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                              {"type": "Hostname", "address": NODE_NAME}],
                "capacity": resources, "allocatable": resources}

    def register(self) -> None:
        """Create this machine's Node: pods bound to a missing node are garbage-collected."""
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}},
                "status": self._node_status()}
        with contextlib.suppress(ApiException):
            self.core.create_node(client.V1Node.model_validate(node), _preload_content=False)
        lease = client.V1Lease(
            metadata=client.V1ObjectMeta(name=NODE_NAME, namespace="kube-node-lease"),
            spec=client.V1LeaseSpec(holder_identity=NODE_NAME, lease_duration_seconds=40))
        self.coordination = client.CoordinationV1Api(self.core.api_client)
        with contextlib.suppress(ApiException):
            self.coordination.create_namespaced_lease("kube-node-lease", lease,
                                                      _preload_content=False)
        self._heartbeat()

    def _heartbeat(self) -> None:
        """Keep the node Ready, as a kubelet's status updates and lease renewals do."""
        if time.monotonic() - self.last_heartbeat < HEARTBEAT_SECONDS:
            return
        self.last_heartbeat = time.monotonic()
        self.core.patch_node_status(NODE_NAME, {"status": self._node_status()},
                                    _preload_content=False)
        if self.coordination is not None:
            renew = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            self.coordination.patch_namespaced_lease(
                NODE_NAME, "kube-node-lease", {"spec": {"renewTime": renew}},
                _preload_content=False)

    def sync(self) -> None:
        """One pass over the namespace's pods; call it every second or so."""
        self._heartbeat()
        seen = set()
        for pod in self._list("pod"):
            self._heartbeat()  # between pods too: starting several can take long under load
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            if pod["metadata"].get("deletionTimestamp"):
                self._release(pod)
            elif uid not in self.refused:
                self._run(pod)
        for uid in list(self.containers):
            if uid not in seen:  # deleted behind our back
                self._stop(uid)

    def crashing(self) -> tuple[str, Path] | None:
        """A pod whose container failed CRASH_LIMIT times, with its log: a bug to report."""
        for local in self.containers.values():
            if local.restarts >= CRASH_LIMIT:
                return local.pod, self.supervisor.log_dir / f"{local.pod}.log"
        return None

    def stop_all(self) -> None:
        for uid in list(self.containers):
            self._stop(uid)

    def _stop(self, uid: str) -> None:
        local = self.containers.pop(uid)
        if local.child is not None:
            self.supervisor.stop(local.child)

    def _release(self, pod: dict[str, Any]) -> None:
        uid, name = pod["metadata"]["uid"], pod["metadata"]["name"]
        if uid in self.containers:
            self._stop(uid)
            self.say(f"pod {name}: stopped")
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0,
                                            _preload_content=False)

    def _ports(self, container: dict[str, Any], component: str) -> dict[int, int]:
        wanted = {p["containerPort"] for p in container.get("ports") or []}
        args = [*container.get("command", []), *container.get("args", [])]
        for flag, value in itertools.pairwise(args):
            if flag.startswith("--") and "port" in flag and value.isdigit():
                wanted.add(int(value))
        return {p: self.fixed_ports.get((component, p)) or lasting_port() for p in sorted(wanted)}

    def _start(self, pod: dict[str, Any]) -> LocalContainer | None:
        meta, spec = pod["metadata"], pod["spec"]
        labels = meta.get("labels") or {}
        component = labels.get(COMPONENT, "")
        container = spec["containers"][0]
        local = self.containers.get(meta["uid"])
        ports = local.ports if local else self._ports(container, component)
        node = Node(volumes=self.volumes, image_files=self.image_files, services=self.services,
                    ports=ports, config_maps=self._data("config_map"),
                    secrets=self._data("secret"))
        if meta["name"] in self.stand_ins:
            local = LocalContainer(meta["name"], component, None, ports, None,
                                   stand_in=self.stand_ins[meta["name"]])
            self.containers[meta["uid"]] = local
            self.say(f"pod {meta['name']}: served by {local.stand_in}")
            return local
        if shutil.which((container.get("command") or [""])[0]) is None:
            # Not a Ferry process (e.g. PostgreSQL's image): the demo runs a stand-in.
            self.refused[meta["uid"]] = f"{container.get('image')}: no local command"
            return None
        # UnsupportedPodError propagates: a Ferry pod that cannot run here is a demo bug to report.
        process = local_pod(pod, workload=meta.get("generateName", meta["name"]),
                            namespace=self.namespace, index=int(labels.get(POD_INDEX, 0)),
                            node=node, name=meta["name"])
        child = self.supervisor.start(meta["name"], _loopback(process.argv),
                                      env={**self.env, **process.env})
        if local is None:
            local = LocalContainer(meta["name"], component, child, ports,
                                   _http_probe(container, "readinessProbe", ports),
                                   _http_probe(container, "startupProbe", ports))
            self.containers[meta["uid"]] = local
            self.say(f"pod {meta['name']}: running {process.argv[0]} (pid {child.pid})")
        else:
            local.child, local.started, local.exit_code = child, _now(), None
            local.probed = False
        return local

    def _data(self, kind: str) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for item in self._list(kind):
            data: dict[str, str] = item.get("data") or {}
            if kind == "secret":
                data = {k: base64.b64decode(v).decode() for k, v in data.items()}
            out[item["metadata"]["name"]] = data
        return out

    def _bind(self, pod: dict[str, Any]) -> bool:
        """Schedule the pod here; False if it was deleted since the list (nothing to run)."""
        name = pod["metadata"]["name"]
        binding = client.V1Binding(
            metadata=client.V1ObjectMeta(name=name),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=NODE_NAME))
        try:
            self.core.create_namespaced_pod_binding(name, self.namespace, binding,
                                                    _preload_content=False)
        except ApiException as error:
            if error.status != 404:
                raise
            return False
        return True

    def _run(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        local = self.containers.get(uid)
        if local is None:
            if not pod["spec"].get("nodeName") and not self._bind(pod):
                return
            image = pod["spec"]["containers"][0].get("image", "")
            if not self.pullable(image):
                self._cannot_pull(pod, image)
                return
            try:
                local = self._start(pod)
            except MissingReferenceError as error:
                # A kubelet keeps such a pod waiting and tries again (the operator may
                # create the Secret just after the workload).
                self._waiting(pod, "CreateContainerConfigError", str(error))
                return
            if local is None:
                return
        elif local.child is not None and local.exit_code is None:
            code = local.child.returncode()
            if code is not None:
                local.exit_code, local.child = code, None
                if code != 0:
                    local.restarts += 1
                    local.retry_at = time.monotonic() + RESTART_BACKOFF * min(local.restarts, 5)
                    self.say(f"pod {local.pod}: exited {code}; restart {local.restarts}")
        elif local.exit_code not in (None, 0) and time.monotonic() >= local.retry_at:
            self._start(pod)
        self._report(pod, local)

    def _cannot_pull(self, pod: dict[str, Any], image: str) -> None:
        """What a kubelet reports for an image it cannot pull (first ErrImagePull, then
        ImagePullBackOff while it backs off), so controllers see a pod that cannot start."""
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        reason = "ImagePullBackOff" if statuses else "ErrImagePull"
        if any((c.get("state") or {}).get("waiting", {}).get("reason") == "ImagePullBackOff"
               for c in statuses):
            return
        self._waiting(pod, reason, f'Back-off pulling image "{image}"')

    def _waiting(self, pod: dict[str, Any], reason: str, message: str) -> None:
        """Report the pod's container waiting, never started, for `reason`."""
        status = _status(pod, "Pending", [("PodScheduled", "True", _now()),
                                          ("ContainersReady", "False", _now()),
                                          ("Ready", "False", _now())],
                         ready=False, started=False, restartCount=0,
                         state={"waiting": {"reason": reason, "message": message}})
        with contextlib.suppress(ApiException):
            self.core.patch_namespaced_pod_status(pod["metadata"]["name"], self.namespace,
                                                  {"status": status}, _preload_content=False)

    def _started(self, local: LocalContainer) -> bool:
        """A kubelet's `started`: the container runs and its startup probe (if any) passed
        once since; readiness and liveness probes run only after that."""
        if local.child is None and local.stand_in is None:
            return False
        if not local.probed:
            port, path = local.startup or (0, "")
            local.probed = local.startup is None or answers(f"http://127.0.0.1:{port}{path}")
        return local.probed

    def _ready(self, local: LocalContainer) -> bool:
        if local.stand_in is not None:
            host, number = local.stand_in.rsplit(":", 1)
            try:
                socket.create_connection((host, int(number)), timeout=1).close()
            except OSError:
                return False
            return True
        if local.child is None:
            return False
        if local.readiness is None:
            return True
        port, path = local.readiness
        return answers(f"http://127.0.0.1:{port}{path}")

    def _report(self, pod: dict[str, Any], local: LocalContainer) -> None:
        started = self._started(local)
        ready = started and self._ready(local)
        if local.child is not None or local.stand_in is not None:
            state: dict[str, Any] = {"running": {"startedAt": local.started}}
        elif local.exit_code == 0:
            state = {"terminated": {"exitCode": 0, "reason": "Completed",
                                    "startedAt": local.started, "finishedAt": _now()}}
        else:
            state = {"waiting": {"reason": "CrashLoopBackOff",
                                 "message": f"exited with code {local.exit_code}"}}
        key = f"{ready}/{started}/{next(iter(state))}/{local.restarts}"
        flag = "True" if ready else "False"
        shown = [c.get("status") for c in (pod.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Ready"]
        # Reported already, unless someone else changed it since: the node controller marks
        # a node's pods unready when it missed heartbeats; a kubelet posts the truth again.
        if key == local.reported and shown == [flag]:
            return
        status = _status(pod, "Running", [("PodScheduled", "True", local.started),
                                          ("Initialized", "True", local.started),
                                          ("ContainersReady", flag, _now()),
                                          ("Ready", flag, _now())],
                         ready=ready, started=started, restartCount=local.restarts, state=state,
                         containerID=_container_id(local))
        status.update({"podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
                       "startTime": local.started})
        try:
            self.core.patch_namespaced_pod_status(pod["metadata"]["name"], self.namespace,
                                                  {"status": status}, _preload_content=False)
            local.reported = key
        except ApiException as error:
            if error.status != 404:
                raise
