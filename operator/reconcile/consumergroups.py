"""ConsumerGroup -> group settings on the queue's broker, children, status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ferry.broker.models import Backoff, GroupSettings, GroupStats, HeaderFilter
from ferry.broker.models import StartAt as BrokerStartAt
from ferry.operator.reconcile import autoscaling, durations, keda, providers
from ferry.operator.reconcile.conditions import (
    Phase,
    Reason,
    Verdict,
    broker_trouble,
    conditions,
)
from ferry.operator.reconcile.metadata import Manifest
from ferry.operator.reconcile.observations import Failure, Problem
from ferry.operator.reconcile.specs import ConsumerGroupSpec, KeyRef, Owner, Provider


def group_settings(spec: ConsumerGroupSpec) -> GroupSettings:
    backoff = spec.nack_backoff
    return GroupSettings(
        start_at=BrokerStartAt(spec.start_at.value.lower()),
        visibility_timeout_ms=(durations.to_ms(spec.visibility_timeout)
                               if spec.visibility_timeout else None),
        max_deliveries=spec.max_deliveries,
        nack_backoff=Backoff(initial_ms=durations.to_ms(backoff.initial),
                             multiplier=backoff.multiplier,
                             max_ms=durations.to_ms(backoff.max)),
        filter=(HeaderFilter(match=spec.filter.match, prefix=spec.filter.prefix)
                if spec.filter else None),
    )


def children(owner: Owner, spec: ConsumerGroupSpec, *, provider: Provider | None,
             endpoint: str | None, token: KeyRef | None = None) -> list[Manifest]:
    """Kubernetes objects a group owns: for `spec.autoscaling`, the HorizontalPodAutoscaler
    (provider Ferry) or the KEDA ScaledObject (provider KEDA, once the broker's `endpoint`
    is known) with the TriggerAuthentication that gives KEDA the broker's `token`. Handlers
    apply and prune the list, so removing autoscaling removes it."""
    if spec.autoscaling is None or provider is None:
        return []
    if provider is Provider.KEDA:
        if endpoint is None:
            return []
        scaled = keda.build_scaled_object(owner, spec.queue, endpoint, spec.autoscaling, token)
        return [keda.build_trigger_auth(owner, token), scaled] if token else [scaled]
    return [autoscaling.build_hpa(owner, spec.queue, spec.autoscaling)]


def verdict(queue: str, stats: GroupStats | None, failure: Failure | None) -> Verdict:
    if stats is not None:
        return Verdict(phase=Phase.READY, reason=Reason.RECONCILED,
                       message=f"group {stats.group} reads queue {stats.queue}")
    if failure is None:
        return Verdict(phase=Phase.PROGRESSING, reason=Reason.QUEUE_NOT_READY,
                       message=f"waiting for queue {queue}")
    if failure.problem is Problem.NO_QUEUE:
        return Verdict(phase=Phase.DEGRADED, reason=Reason.QUEUE_NOT_FOUND,
                       message=f"Queue {queue} does not exist in this namespace")
    if failure.problem is Problem.MISSING:
        return Verdict(phase=Phase.PROGRESSING, reason=Reason.QUEUE_NOT_READY,
                       message=f"queue {queue} is not on its broker yet: {failure.message}")
    return broker_trouble(failure)


def figures(stats: GroupStats) -> dict[str, Any]:
    return {
        "lag": stats.lag,
        "depth": stats.depth,
        "inFlight": stats.in_flight,
        "dead": stats.dead,
        "consumers": len(stats.consumers),
        "oldestReadyAge": durations.from_ms(stats.oldest_ready_age_ms),
    }


def status(
    *,
    owner: Owner,
    spec: ConsumerGroupSpec,
    endpoint_url: str | None,
    stats: GroupStats | None,
    failure: Failure | None,
    previous: Sequence[Mapping[str, Any]],
    now: datetime,
    scaling: providers.Choice | None = None,
) -> dict[str, Any]:
    """The whole status to write; figures are left out (kept as they were) without stats.

    With autoscaling, `scaling` adds the ScalingActive condition (which provider, or why
    none can scale the group) beside Ready/Progressing/Degraded.
    """
    judged = verdict(spec.queue, stats, failure)
    listed = conditions(judged, owner.generation, previous, now)
    if scaling is not None:
        before = next((c for c in previous if c.get("type") == providers.CONDITION), None)
        listed.append(providers.condition(scaling, owner.generation, before, now))
    out: dict[str, Any] = {
        "observedGeneration": owner.generation,
        "conditions": listed,
    }
    if endpoint_url is not None:
        out["endpoint"] = endpoint_url
    if stats is not None:
        out.update(figures(stats))
    return out
