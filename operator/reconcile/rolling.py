"""Rolling a replicated Queue's broker pods ourselves, one at a time, the leader last.

The broker StatefulSet of a Queue with replicas > 1 uses updateStrategy OnDelete: the
StatefulSet controller's own rolling update waits for each new pod to be Ready, which a
standby never is. So the operator deletes the pods of an older revision itself and the
controller recreates them from the current template: standbys first (highest ordinal
first, as the controller would), the leader last, so the queue changes leader once; one
pod at a time, each next step only once every pod of the set runs again (a new standby
cannot be Ready: running, its container started, is what it can show) and a leader is
serving (never roll while a takeover is under way). No side effects: the handler deletes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ferry.operator.reconcile.conditions import holds

REVISION = "controller-revision-hash"


@dataclass(frozen=True)
class Step:
    pod: str  # the pod to delete next
    leader: bool  # it leads the queue now (the last step)
    revision: str  # the revision its replacement gets


def _ready(pod: Mapping[str, Any]) -> bool:
    return holds((pod.get("status") or {}).get("conditions") or [], "Ready")


def _running(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    return status.get("phase") == "Running" and bool(containers) and all(
        c.get("started") and "running" in (c.get("state") or {}) for c in containers)


def _ordinal(pod: Mapping[str, Any]) -> int:
    tail = pod["metadata"]["name"].rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def next_step(sts: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Step | None:
    """The broker pod to delete now, or None: nothing to roll, or not yet (see above)."""
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    revision = status.get("updateRevision")
    generation = int((sts.get("metadata") or {}).get("generation") or 0)
    if not revision or int(status.get("observedGeneration") or 0) < generation:
        return None  # the controller has not yet made the new template's revision
    old = [p for p in pods if (p["metadata"].get("labels") or {}).get(REVISION) != revision]
    if not old:
        return None
    if len(pods) < int(spec.get("replicas", 1)) or any(
            p["metadata"].get("deletionTimestamp") or not _running(p) for p in pods):
        return None  # a pod is going or coming: one at a time
    if not any(_ready(p) for p in pods):
        return None  # no leader serves: a takeover is under way
    standbys = [p for p in old if not _ready(p)]
    chosen = max(standbys or old, key=_ordinal)
    return Step(chosen["metadata"]["name"], leader=not standbys, revision=revision)
