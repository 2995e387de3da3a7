"""Lag-driven autoscaling, decided without side effects.

Three decisions live here, each a pure function the handlers and the metrics API call:

- `metric_value`: the figure the HPA scales on, from a consumer group's broker stats;
- `build_hpa`: the autoscaling/v2 HorizontalPodAutoscaler a ConsumerGroup owns;
- `decide_idle_scaling`: the KEDA-style 0 <-> 1 step the HPA cannot take by itself
  (an HPA never goes below minReplicas >= 1, and it stands aside while replicas is 0).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ferry.broker.models import GroupStats
from ferry.operator.reconcile import durations
from ferry.operator.reconcile.metadata import Manifest, child_metadata
from ferry.operator.reconcile.specs import Autoscaling, Owner

METRIC_NAME = "ferry_consumergroup_lag"
# Label keys of the metric: an HPA's selector picks one consumer group with them.
LABEL_NAMESPACE = "namespace"
LABEL_QUEUE = "queue"
LABEL_GROUP = "group"


def metric_value(stats: GroupStats) -> int | None:
    """The lag more consumers can work off: ready plus in-flight messages (None: not known).

    Delayed messages (a future not-before time or a nack backoff) wait for the clock, not for
    consumers, so they do not ask for replicas; dead letters are out of the flow altogether.
    A broker that restarted counts only the messages it has read back so far: a figure that
    low would scale consumers in, so it is no figure at all until the restore is done.
    """
    return None if stats.restoring else stats.backlog


def metric_labels(namespace: str, queue: str, group: str) -> dict[str, str]:
    return {LABEL_NAMESPACE: namespace, LABEL_QUEUE: queue, LABEL_GROUP: group}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


def scales_to_zero(spec: Autoscaling) -> bool:
    """minReplicas 0 (as in KEDA): an idle group releases every replica."""
    return spec.min_replicas == 0


def replicas_for(value: int, spec: Autoscaling) -> int:
    """What the HPA aims for at this metric value: ceil(value / lagPerReplica), bounded.

    The HPA's floor is 1; the step to 0 is `decide_idle_scaling`'s. The HPA controller makes
    the actual decision (with its tolerance and windows); this is the figure it converges to.
    """
    wanted = math.ceil(value / spec.lag_per_replica)
    return max(1, spec.min_replicas, min(spec.max_replicas, wanted))


def target_ref(spec: Autoscaling) -> dict[str, str]:
    """The scaled workload, as an HPA's or a ScaledObject's scaleTargetRef."""
    return {"apiVersion": spec.target.api_version, "kind": spec.target.kind,
            "name": spec.target.name}


def build_hpa(owner: Owner, queue: str, spec: Autoscaling) -> Manifest:
    """The HPA of ConsumerGroup `owner` (on `queue`): scales spec.target on the group's lag.

    An External metric with an AverageValue target needs no pod metrics: the controller
    divides the group's lag by lagPerReplica, so pods that are not ready yet cannot hold
    scaling back. Rate policies are Kubernetes' defaults (up: +100% or +4 pods per 15s,
    down: -100% per 15s); the stabilization windows come from the spec.
    """
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": child_metadata(owner, owner.name, "autoscaler"),
        "spec": {
            "scaleTargetRef": target_ref(spec),
            # The HPA cannot hold 0; `decide_idle_scaling` takes the last step down and back.
            "minReplicas": max(1, spec.min_replicas),
            "maxReplicas": spec.max_replicas,
            "metrics": [{
                "type": "External",
                "external": {
                    "metric": {
                        "name": METRIC_NAME,
                        "selector": {"matchLabels": {LABEL_QUEUE: queue,
                                                     LABEL_GROUP: owner.name}},
                    },
                    "target": {"type": "AverageValue", "averageValue": str(spec.lag_per_replica)},
                },
            }],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": _seconds(spec.scale_up_stabilization)},
                "scaleDown": {
                    "stabilizationWindowSeconds": _seconds(spec.scale_down_stabilization)},
            },
        },
    }


def _seconds(window: str) -> int:
    # The HPA counts whole seconds (the CRD already capped the window at its one-hour limit).
    return math.ceil(durations.to_ms(window) / 1000)


class IdleReason(StrEnum):
    ACTIVATED = "Activated"          # 0 -> 1: messages arrived for an idle group
    IDLE = "ScaledToZero"            # N -> 0: no lag for idleAfter
    RESTORED = "ScaleToZeroDisabled"  # 0 -> 1: we had scaled to 0, and 0 is no longer allowed


class IdleState(_Model):
    """What the operator persists between passes (in the CR's status).

    `last_active` is the last time lag was seen (or when watching began); `scaled_to_zero`
    remembers that the 0 is ours, so disabling scale-to-zero brings the target back.
    """

    last_active: datetime | None = Field(None, alias="lastActiveTime")
    scaled_to_zero: bool = Field(False, alias="scaledToZero")

    def for_status(self) -> dict[str, Any]:
        return {
            "lastActiveTime": self.last_active.isoformat() if self.last_active else None,
            "scaledToZero": self.scaled_to_zero,
        }


class IdleDecision(_Model):
    state: IdleState
    replicas: int | None = Field(None, description="set the target's replicas to this; None: leave")
    reason: IdleReason | None = None


def decide_idle_scaling(*, spec: Autoscaling, lag: int | None, replicas: int,
                        state: IdleState, now: datetime) -> IdleDecision:
    """The 0 <-> 1 step, KEDA's way; every other replica count is the HPA's business.

    lag None means the broker could not be asked: nothing changes on a guess.
    replicas is the target's spec.replicas as it is now.
    """
    if lag is None:
        return IdleDecision(state=state)
    if not scales_to_zero(spec):
        if state.scaled_to_zero and replicas == 0:
            return IdleDecision(state=IdleState(last_active=now), replicas=1,
                                reason=IdleReason.RESTORED)
        return IdleDecision(state=IdleState(last_active=now if lag else state.last_active))
    if lag > 0:
        active = IdleState(last_active=now)
        if replicas == 0:
            return IdleDecision(state=active, replicas=1, reason=IdleReason.ACTIVATED)
        return IdleDecision(state=active)
    # No lag: the idle clock starts at the first observation, so a new group is not scaled
    # to zero before it had idleAfter to receive its first message.
    since = state.last_active or now
    if replicas > 0 and now - since >= timedelta(milliseconds=durations.to_ms(spec.idle_after)):
        return IdleDecision(state=IdleState(last_active=since, scaled_to_zero=True), replicas=0,
                            reason=IdleReason.IDLE)
    return IdleDecision(state=IdleState(last_active=since,
                                        scaled_to_zero=state.scaled_to_zero and replicas == 0))


def should_wake(spec: Autoscaling, replicas: int | None) -> bool:
    """Whether to wait on the broker for the first message: the target sits at zero."""
    return scales_to_zero(spec) and replicas == 0


class ReplicaStatus(_Model):
    current: int = Field(alias="currentReplicas")
    desired: int = Field(alias="desiredReplicas")

    def for_status(self) -> dict[str, int]:
        return {"currentReplicas": self.current, "desiredReplicas": self.desired}


def replica_status(hpa: dict[str, Any] | None, target_replicas: int | None) -> ReplicaStatus | None:
    """Status figures from the HPA's own status, or from the target while it is scaled to 0.

    At 0 the HPA stands aside (its status keeps the last numbers), so the target speaks.
    """
    if target_replicas is None:
        return None
    if target_replicas == 0 or hpa is None:
        return ReplicaStatus(current=target_replicas, desired=target_replicas)
    status = hpa.get("status") or {}
    return ReplicaStatus(current=int(status.get("currentReplicas", target_replicas)),
                         desired=int(status.get("desiredReplicas", target_replicas)))
