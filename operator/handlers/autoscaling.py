"""The autoscaling part of a ConsumerGroup pass: the 0 <-> 1 step and the replica figures.

The HPA (a child applied with the others) does every other replica change; this only
takes the step it cannot (to 0 when idle, back to 1 on the first message) and reports
current/desired replicas. Runs on the stats timer, so it reacts within --stats-seconds.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import kopf

from ferry.broker.models import GroupStats
from ferry.operator.clients.errors import KubeError
from ferry.operator.handlers.common import Runtime, workload_pods
from ferry.operator.metrics import SCALED_BACKLOG, SCALED_REPLICAS
from ferry.operator.reconcile import keda, scalein
from ferry.operator.reconcile.autoscaling import (
    IdleReason,
    IdleState,
    decide_idle_scaling,
    metric_value,
    replica_status,
    should_wake,
)
from ferry.operator.reconcile.specs import Autoscaling, Owner, Provider

HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")


def _record(owner: Owner, provider: Provider | None, replicas: int,
            stats: GroupStats | None) -> None:
    """Replicas against backlog for the dashboard, under the provider that scales now."""
    name = provider.value if provider else "None"
    _drop_replicas(owner, keep=name)
    SCALED_REPLICAS.labels(owner.namespace, owner.name, name).set(replicas)
    value = None if stats is None else metric_value(stats)
    if value is not None:
        SCALED_BACKLOG.labels(owner.namespace, owner.name).set(value)


def _drop_replicas(owner: Owner, keep: str | None = None) -> None:
    for name in [*(p.value for p in Provider), "None"]:
        if name != keep:
            with contextlib.suppress(KeyError):
                SCALED_REPLICAS.remove(owner.namespace, owner.name, name)


def forget_scaling(owner: Owner) -> None:
    """Drop a deleted group's series from /metrics."""
    _drop_replicas(owner)
    with contextlib.suppress(KeyError):
        SCALED_BACKLOG.remove(owner.namespace, owner.name)


async def keep_deletion_costs(rt: Runtime, body: Any, owner: Owner, spec: Autoscaling,
                              stats: GroupStats) -> None:
    """Each pod of the target gets the leases its consumers hold as its deletion cost, so
    a scale-in (the HPA's or KEDA's) removes idle consumers first."""
    target = spec.target
    try:
        workload = await rt.read(target.api_version, target.kind, owner.namespace, target.name)
        selector = scalein.selector_of(workload) if workload else None
        if selector is None or workload is None:
            return
        pods = workload_pods(rt, workload)
        if not pods:  # not a workload Ferry made (its pods are not watched): ask
            pods = await rt.kube.list("v1", "Pod", owner.namespace, selector)
        for pod, cost in scalein.cost_changes(scalein.live_costs(pods), stats.consumers).items():
            await rt.kube.annotate("v1", "Pod", owner.namespace, pod,
                                   {scalein.DELETION_COST: cost})
    except KubeError as e:
        kopf.warn(body, reason="DeletionCostFailed",
                  message=f"cannot keep the pods' deletion costs of {target.kind}/"
                          f"{target.name}: {e}")


WAKE_POLL_MS = 20_000  # one long poll per group at zero; the broker answers at the publish


async def wake_on_first_message(rt: Runtime, body: Any, owner: Owner, spec: Autoscaling,
                                url: str, token: str | None, queue: str) -> bool:
    """While the target sits at zero, long-poll the broker for the group's backlog and
    take the 0 -> 1 step the moment a message arrives, for either provider (KEDA would
    otherwise wait for its next pollingInterval, the operator for its stats timer).

    True when the target is still at zero and nothing came: poll again at once.
    """
    target = spec.target
    replicas = await _replicas(rt, owner, spec)
    if not should_wake(spec, replicas):
        return False
    stats = await rt.brokers.group_stats(url, token, queue, owner.name, wait_ms=WAKE_POLL_MS)
    # Read again: the stats timer, KEDA or a person may have moved it meanwhile.
    replicas = await _replicas(rt, owner, spec)
    # The backlog itself, not metric_value: while a restarted broker reads its messages
    # back it is a lower bound, and any message at all is work for a consumer.
    if stats.backlog == 0 or not should_wake(spec, replicas):
        return should_wake(spec, replicas)
    await rt.kube.scale(target.api_version, target.kind, owner.namespace, target.name, 1)
    kopf.info(body, reason=IdleReason.ACTIVATED.value,
              message=f"scaled {target.kind}/{target.name} from 0 to 1: the broker reported "
                      f"a backlog of {stats.backlog}")
    return False


async def autoscale(rt: Runtime, body: Any, owner: Owner, spec: Autoscaling,
                    stats: GroupStats | None, provider: Provider | None) -> dict[str, Any]:
    """Status fields for the pass ({} while the target cannot be read).

    With KEDA (or no provider at all) the operator never takes the 0 <-> 1 step: KEDA
    takes it itself, and without a provider nothing should move the target.
    """
    target = spec.target
    what = f"{target.kind}/{target.name}"
    try:
        replicas = await _replicas(rt, owner, spec)
    except KubeError as e:
        kopf.warn(body, reason="TargetUnreadable", message=f"cannot read {what}: {e}")
        return {}
    if replicas is None:
        return {}
    _record(owner, provider, replicas, stats)
    if provider is not Provider.FERRY:
        hpa = None
        if provider is Provider.KEDA:
            with contextlib.suppress(KubeError):
                hpa = await rt.read(*HPA, owner.namespace, keda.hpa_name(owner))
        figures = replica_status(hpa, replicas)
        return figures.for_status() if figures else {}
    previous = IdleState.model_validate((body.get("status") or {}).get("idle") or {})
    decision = decide_idle_scaling(spec=spec, lag=metric_value(stats) if stats else None,
                                   replicas=replicas, state=previous, now=datetime.now(UTC))
    if decision.replicas is not None and decision.reason is not None:
        try:
            await rt.kube.scale(target.api_version, target.kind, owner.namespace, target.name,
                                decision.replicas)
        except KubeError as e:
            kopf.warn(body, reason="ScaleFailed",
                      message=f"scaling {what} to {decision.replicas} failed: {e}")
            return {"idle": previous.for_status()}
        kopf.info(body, reason=decision.reason.value,
                  message=f"scaled {what} from {replicas} to {decision.replicas}")
        replicas = decision.replicas
    try:
        hpa = await rt.read(*HPA, owner.namespace, owner.name)
    except KubeError:
        hpa = None  # the figures then come from the target alone
    figures = replica_status(hpa, replicas)
    return {**(figures.for_status() if figures else {}), "idle": decision.state.for_status()}


async def _replicas(rt: Runtime, owner: Owner, spec: Autoscaling) -> int | None:
    """The target's spec.replicas: from the watch when Ferry made the target (a pipeline's
    collectors), else read through /scale."""
    target = spec.target
    watched = rt.watched.get(target.api_version, target.kind, owner.namespace, target.name)
    if watched is not None:
        return int((watched.get("spec") or {}).get("replicas", 1))
    return await rt.kube.replicas(target.api_version, target.kind, owner.namespace, target.name)
