"""Queue handlers: apply the broker workload, create the queue on its broker, poll stats."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from ferry.operator.clients.errors import BrokerTrouble
from ferry.operator.handlers.common import (
    Runtime,
    apply_or_degrade,
    failure_of,
    owner_of,
    parse_spec,
    register_kind,
    settle_deletion,
    workload_pods,
)
from ferry.operator.metrics import RECONCILE_SECONDS, RECONCILES
from ferry.operator.reconcile import deletion, queues, readiness
from ferry.operator.reconcile.observations import Failure
from ferry.operator.reconcile.specs import QueueSpec
from ferry.operator.settings import OperatorSettings

PLURAL = "queues"
PRUNE = [("v1", "ConfigMap"), ("v1", "Service"), ("apps/v1", "StatefulSet"),
         ("policy/v1", "PodDisruptionBudget")]


async def reconcile(rt: Runtime, body: Any, patch: kopf.Patch, *, apply: bool) -> None:
    """One level-based pass: desired children (when `apply`), the queue on its broker, status."""
    kind = "Queue"
    with RECONCILE_SECONDS.labels(kind).time():
        owner = owner_of(body)
        spec = parse_spec(QueueSpec, body, patch)
        if spec is None:
            return
        url = queues.endpoint(owner.namespace, owner.name, spec, rt.settings.broker_url)
        desired = queues.children(owner, spec)
        if apply and not await apply_or_degrade(rt, body, patch, owner, desired, PRUNE):
            return
        ready, rollout, stuck = 0, None, None
        if queues.manages_broker(spec):
            name = queues.broker_name(owner.name)
            sts = await rt.kube.get("apps/v1", "StatefulSet", owner.namespace, name)
            ready = int(((sts or {}).get("status") or {}).get("readyReplicas") or 0)
            if not queues.served_elsewhere(spec, rt.settings.broker_url):
                # Ready only once the broker rolled out this spec, not on an older pod.
                rollout = (readiness.rollout_gap(sts) if sts is not None
                           else f"StatefulSet {name} is not created yet")
                stuck = readiness.stuck(await workload_pods(rt, sts))
        stats, failure = None, None
        try:
            stats = await rt.brokers.ensure_queue(url, owner.name, queues.broker_settings(spec))
        except BrokerTrouble as e:
            failure = failure_of(e)
        patch["status"] = queues.status(
            owner=owner, spec=spec, endpoint_url=url, ready_replicas=ready, stats=stats,
            failure=failure, previous=(body.get("status") or {}).get("conditions") or [],
            now=datetime.now(UTC), rollout=rollout, stuck=stuck)
        RECONCILES.labels(kind, "ready" if stats else "not-ready").inc()


async def finalize(rt: Runtime, body: Any, retry: int) -> None:
    """Delete policy: remove the queue from its broker, with bounded retries; Retain: keep it."""
    owner = owner_of(body)
    spec = QueueSpec.model_validate(body["spec"])
    if deletion.first_step(spec.deletion_policy) is deletion.Step.RELEASE:
        kopf.info(body, reason="Retained",
                  message=f"deletionPolicy Retain: queue {owner.name} and its data are kept")
        return
    url = queues.endpoint(owner.namespace, owner.name, spec, rt.settings.broker_url)
    failure: Failure | None = None
    try:
        await rt.brokers.delete_queue(url, owner.name)
    except BrokerTrouble as e:
        failure = failure_of(e)
    await settle_deletion(rt.settings, body, f"queue {owner.name} on {url}", failure, retry)


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    register_kind(registry, settings, PLURAL, reconcile, finalize)
