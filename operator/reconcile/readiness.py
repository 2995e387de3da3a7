"""Whether an observed child object is ready, judged from its own status (no side effects).

A workload (Deployment, StatefulSet) is ready once it has rolled out its current spec: its
controller has observed the spec's generation, and every wanted replica is updated to that
spec and ready, with no old replica left. Before that, `rollout_gap` says what is missing.
A rollout that cannot finish without someone changing something (an image that cannot be
pulled, a container that keeps crashing) shows on its pods: `stuck` names them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ferry.operator.reconcile.conditions import holds
from ferry.operator.reconcile.metadata import API_VERSION

_WORKLOADS = {("apps/v1", "Deployment"), ("apps/v1", "StatefulSet")}

# Container waiting reasons a kubelet gives when the container cannot start or keeps
# failing; none of them goes away without a change (of the spec, the image, a Secret).
STUCK_REASONS = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})


def is_workload(obj: Mapping[str, Any]) -> bool:
    return (obj.get("apiVersion"), obj.get("kind")) in _WORKLOADS


def rollout_gap(obj: Mapping[str, Any], ready_wanted: int | None = None) -> str | None:
    """What a workload still lacks to have rolled out its current spec; None once it has.
    `ready_wanted`: how many replicas must be ready (default: all; brokers that elect a
    leader: one, as standbys never are)."""
    name = f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')}"
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    generation = int((obj.get("metadata") or {}).get("generation") or 0)
    if int(status.get("observedGeneration") or 0) < generation:
        return f"{name}: its controller has not yet observed generation {generation}"
    wanted = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    total = int(status.get("replicas") or 0)
    if updated < wanted:
        return f"{name}: {updated}/{wanted} replicas updated to the current spec"
    if total > wanted:
        return f"{name}: {total - wanted} old replicas still terminating"
    need = wanted if ready_wanted is None else min(ready_wanted, wanted)
    if ready < need:
        return f"{name}: {ready}/{need} replicas ready"
    return None


def is_ready(obj: Mapping[str, Any]) -> bool:
    status = obj.get("status") or {}
    if obj.get("apiVersion") == API_VERSION:
        return holds(status.get("conditions") or [], "Ready")
    if is_workload(obj):
        return rollout_gap(obj) is None
    return True  # Services, ConfigMaps, budgets: existing is being ready


def started(pod: Mapping[str, Any]) -> bool:
    """Running with every container started (its startupProbe passed): a standby broker is
    never Ready, so this, not Ready, is what says its pod is up."""
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    return status.get("phase") == "Running" and bool(containers) and all(
        c.get("started") and "running" in (c.get("state") or {}) for c in containers)


def replacing(pods: Sequence[Mapping[str, Any]], wanted: int) -> str | None:
    """A broker pod on its way out or not up yet, which the StatefulSet's status may not
    show: its controller deletes and creates pods before it writes readyReplicas, so for a
    moment the status counts a pod ready whose broker no longer answers. None when every
    wanted pod is there and started."""
    if len(pods) < wanted:
        return f"{len(pods)}/{wanted} broker pods exist"
    for pod in pods:
        name = pod["metadata"]["name"]
        if pod["metadata"].get("deletionTimestamp"):
            return f"pod {name} is being deleted"
        if not started(pod):
            return f"pod {name} is starting"
    return None


def stuck(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The first pod whose container cannot start or keeps failing, and why; None if none."""
    for pod in pods:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        for container in statuses:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK_REASONS:
                detail = f": {waiting['message']}" if waiting.get("message") else ""
                return (f"pod {pod['metadata']['name']}: container {container.get('name')} "
                        f"{waiting['reason']}{detail}")
    return None


def stale_and_stuck(workload: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """Pods of a StatefulSet that cannot start and belong to an older revision than the
    one it now wants. Its controller waits forever for such a pod to become ready before
    replacing it (kubernetes/kubernetes#67250), so a fixed spec would never roll out:
    these are the pods to delete, so that it recreates them from the current revision."""
    if workload.get("kind") != "StatefulSet":
        return []
    wanted = (workload.get("status") or {}).get("updateRevision")
    if not wanted:
        return []
    return [p["metadata"]["name"] for p in pods
            if stuck([p]) is not None
            and ((p.get("metadata") or {}).get("labels") or {}).get(
                "controller-revision-hash") not in (None, wanted)]
