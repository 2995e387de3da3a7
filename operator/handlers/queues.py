"""Queue handlers: apply the broker workload, create the queue on its broker, poll stats."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import kopf

from ferry.broker.models import QueueStats
from ferry.operator.clients.brokers import UNAUTHORIZED
from ferry.operator.clients.errors import BrokerTrouble
from ferry.operator.handlers.common import (
    Plan,
    Runtime,
    apply_or_degrade,
    failure_of,
    owner_of,
    parse_spec,
    planner,
    register_kind,
    settle_deletion,
    workload_pods,
    write_status,
)
from ferry.operator.handlers.tokens import TokenMissingError, broker_token, forget
from ferry.operator.metrics import RECONCILE_SECONDS, RECONCILES
from ferry.operator.reconcile import deletion, queues, readiness, tenancy
from ferry.operator.reconcile.observations import Failure
from ferry.operator.reconcile.specs import Owner, QueueSpec
from ferry.operator.settings import OperatorSettings

PLURAL = "queues"
PRUNE = [("v1", "ConfigMap"), ("v1", "Service"), ("apps/v1", "StatefulSet"),
         ("policy/v1", "PodDisruptionBudget")]


plan = planner(QueueSpec, queues.children, PRUNE)


async def _broker_pass(rt: Runtime, owner: Owner, spec: QueueSpec,
                       url: str) -> tuple[QueueStats | None, Failure | None]:
    """The queue on its broker, with the broker's token; nothing is sent to a refused one."""
    refused = tenancy.refusal(owner.namespace, spec, rt.settings.external_broker_namespaces)
    if refused is not None:
        return None, refused
    try:
        token = await broker_token(rt, owner.namespace, owner.name, spec, owner)
        return await rt.brokers.ensure_queue(url, token, owner.name,
                                             queues.broker_settings(spec)), None
    except TokenMissingError as e:
        return None, e.failure
    except BrokerTrouble as e:
        if e.problem == UNAUTHORIZED:
            forget(rt, owner.namespace, owner.name, spec)
        return None, failure_of(e)


async def reconcile(rt: Runtime, body: Any, patch: kopf.Patch, *, apply: bool) -> None:
    """One level-based pass: desired children (when `apply`), the queue on its broker, status."""
    kind = "Queue"
    with RECONCILE_SECONDS.labels(kind).time():
        owner = owner_of(body)
        spec = parse_spec(QueueSpec, body, patch)
        if spec is None:
            return
        url = queues.endpoint(owner.namespace, owner.name, spec, rt.settings.broker_url)
        if apply and queues.manages_broker(spec):
            # The Secret first: the broker pod mounts it (a failure shows in the broker pass).
            with contextlib.suppress(TokenMissingError):
                await broker_token(rt, owner.namespace, owner.name, spec, owner)
        planned = Plan(owner=owner, desired=queues.children(owner, spec), prune=PRUNE)
        if apply and not await apply_or_degrade(rt, body, patch, planned):
            return
        ready, rollout, stuck = 0, None, None
        if queues.manages_broker(spec):
            name = queues.broker_name(owner.name)
            sts = rt.watched.get("apps/v1", "StatefulSet", owner.namespace, name)
            ready = int(((sts or {}).get("status") or {}).get("readyReplicas") or 0)
            if not queues.served_elsewhere(spec, rt.settings.broker_url):
                # Ready only once the broker rolled out this spec, not on an older pod.
                rollout = (readiness.rollout_gap(sts) if sts is not None
                           else f"StatefulSet {name} is not created yet")
                stuck = readiness.stuck(workload_pods(rt, sts))
        stats, failure = await _broker_pass(rt, owner, spec, url)
        write_status(body, patch, queues.status(
            owner=owner, spec=spec, endpoint_url=url, ready_replicas=ready, stats=stats,
            failure=failure, previous=(body.get("status") or {}).get("conditions") or [],
            now=datetime.now(UTC), rollout=rollout, stuck=stuck))
        RECONCILES.labels(kind, "ready" if stats else "not-ready").inc()


async def finalize(rt: Runtime, body: Any, retry: int) -> None:
    """Delete policy: remove the queue from its broker, with bounded retries; Retain: keep it.

    An external broker the operator refuses is never called: the queue there is left alone."""
    owner = owner_of(body)
    spec = QueueSpec.model_validate(body["spec"])
    if deletion.first_step(spec.deletion_policy) is deletion.Step.RELEASE:
        kopf.info(body, reason="Retained",
                  message=f"deletionPolicy Retain: queue {owner.name} and its data are kept")
        return
    refused = tenancy.refusal(owner.namespace, spec, rt.settings.external_broker_namespaces)
    if refused is not None:
        kopf.warn(body, reason="Retained", message=f"queue {owner.name} is left on its broker: "
                  f"{refused.message}")
        return
    url = queues.endpoint(owner.namespace, owner.name, spec, rt.settings.broker_url)
    failure: Failure | None = None
    try:
        token = await broker_token(rt, owner.namespace, owner.name, spec)
        await rt.brokers.delete_queue(url, token, owner.name)
    except TokenMissingError as e:
        failure = e.failure
    except BrokerTrouble as e:
        failure = failure_of(e)
    await settle_deletion(rt.settings, body, f"queue {owner.name} on {url}", failure, retry)


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    register_kind(registry, settings, PLURAL, reconcile, finalize)
