"""Rolling a replicated Queue's broker pods ourselves, one at a time, the leader last.

The broker StatefulSet of a Queue with replicas > 1 uses updateStrategy OnDelete: the
StatefulSet controller's own rolling update waits for each new pod to be Ready, which a
standby never is. So the operator deletes the pods of an older revision itself and the
controller recreates them from the current template: standbys first (highest ordinal
first, as the controller would), the leader last, so the queue changes leader once; one
pod at a time, each next step only once every pod of the set started again (a new standby
cannot be Ready: its container's `started`, set by the kubelet once the startupProbe on
/healthz passed, is what it can show) and a leader is serving (never roll while a takeover
is under way).

The pod deleted last is recorded in the Queue's status (`status.rolling`) before it is
deleted, and the record goes only once its replacement started: the guard against two
deletions at once lives in the API, not in one operator's memory, so an operator restarted
mid-roll (or another replica taking over) waits for that pod as the first one would have.
This is how CloudNativePG keeps a rollout's progress (its Cluster's status), never in the
controller's memory. No side effects, time passed in: the handler writes and deletes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ferry.operator.reconcile.conditions import holds
from ferry.operator.reconcile.readiness import replacing, started

REVISION = "controller-revision-hash"
# The recorded pod still shows with its old uid and no deletionTimestamp this long after
# its deletion: the operator stopped between recording and deleting (or the watch lags
# that much). Deleting that same pod again is safe (it is never a second pod).
DELETE_AGAIN_AFTER = timedelta(seconds=30)


@dataclass(frozen=True)
class Step:
    pod: str  # the pod to delete next
    leader: bool  # it leads the queue now (the last step)
    revision: str  # the revision its replacement gets
    uid: str = ""  # the uid of the pod to delete (a precondition of the deletion)


@dataclass(frozen=True)
class Rolling:
    """The pod deleted to roll it, until its replacement started (status.rolling)."""

    pod: str
    uid: str  # the deleted pod's uid: its replacement has another
    deleted_at: datetime

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> Rolling | None:
        found = (status or {}).get("rolling")
        if not isinstance(found, Mapping) or not found.get("pod"):
            return None
        return cls(str(found["pod"]), str(found.get("uid") or ""),
                   datetime.fromisoformat(str(found["deletedAt"])))

    def for_status(self) -> dict[str, str]:
        return {"pod": self.pod, "uid": self.uid,
                "deletedAt": self.deleted_at.strftime("%Y-%m-%dT%H:%M:%SZ")}


@dataclass(frozen=True)
class Plan:
    """What to do now: the record status.rolling must hold (written before any deletion;
    None clears it) and the pod to delete, if any."""

    record: Rolling | None
    delete: Step | None = None


def _ready(pod: Mapping[str, Any]) -> bool:
    return holds((pod.get("status") or {}).get("conditions") or [], "Ready")


def _ordinal(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _step(pod: Mapping[str, Any], revision: str, *, leader: bool) -> Step:
    meta = pod["metadata"]
    return Step(meta["name"], leader=leader, revision=revision, uid=str(meta.get("uid") or ""))


def _pending(record: Rolling, sts: Mapping[str, Any], pods: Sequence[Mapping[str, Any]],
             now: datetime) -> Plan | None:
    """While the recorded pod is not back: what to do (wait, or delete it again); None once
    it is back (or will never be: the set shrank below it)."""
    revision = str((sts.get("status") or {}).get("updateRevision") or "")
    current = next((p for p in pods if p["metadata"]["name"] == record.pod), None)
    if current is None:
        gone = _ordinal(record.pod) >= int((sts.get("spec") or {}).get("replicas", 1))
        return None if gone else Plan(record)
    meta = current["metadata"]
    if meta.get("deletionTimestamp"):
        return Plan(record)
    if meta.get("uid") == record.uid:  # the deletion is not seen (yet)
        if (meta.get("labels") or {}).get(REVISION) == revision:
            return None  # the spec went back to this pod's revision: nothing to roll
        if now - record.deleted_at < DELETE_AGAIN_AFTER:
            return Plan(record)
        return Plan(Rolling(record.pod, record.uid, now),
                    _step(current, revision, leader=_ready(current)))
    return None if started(current) else Plan(record)


def next_step(sts: Mapping[str, Any], pods: Sequence[Mapping[str, Any]],
              record: Rolling | None, now: datetime) -> Plan:
    """The broker pod to delete now, if any, and the record to keep (see above)."""
    if record is not None:
        waiting = _pending(record, sts, pods, now)
        if waiting is not None:
            return waiting
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    revision = status.get("updateRevision")
    generation = int((sts.get("metadata") or {}).get("generation") or 0)
    if not revision or int(status.get("observedGeneration") or 0) < generation:
        return Plan(None)  # the controller has not yet made the new template's revision
    old = [p for p in pods if (p["metadata"].get("labels") or {}).get(REVISION) != revision]
    if not old:
        return Plan(None)
    if replacing(pods, int(spec.get("replicas", 1))) is not None:
        return Plan(None)  # a pod is going or coming: one at a time
    if not any(_ready(p) for p in pods):
        return Plan(None)  # no leader serves: a takeover is under way
    standbys = [p for p in old if not _ready(p)]
    chosen = _step(max(standbys or old, key=lambda p: _ordinal(p["metadata"]["name"])),
                   revision, leader=not standbys)
    return Plan(Rolling(chosen.pod, chosen.uid, now), chosen)
