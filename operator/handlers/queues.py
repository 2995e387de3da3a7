"""Queue handlers: apply the broker workload, create the queue on its broker, poll stats."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import kopf

from ferry.broker.models import QueueStats
from ferry.operator.clients.errors import BrokerTrouble
from ferry.operator.handlers.common import (
    Plan,
    Runtime,
    apply_or_degrade,
    failure_of,
    never_reconciled,
    owner_of,
    parse_spec,
    register_kind,
    replace_stuck_pods,
    settle_deletion,
    workload_pods,
    write_status,
)
from ferry.operator.handlers.tokens import TokenMissingError, broker_token, forget
from ferry.operator.identity import API_VERSION
from ferry.operator.metrics import CHILD_CHANGES, RECONCILE_SECONDS, RECONCILES
from ferry.operator.reconcile import deletion, queues, readiness, rolling, tenancy, volumes
from ferry.operator.reconcile.conditions import Reason
from ferry.operator.reconcile.metadata import Manifest
from ferry.operator.reconcile.observations import Failure, Problem
from ferry.operator.reconcile.specs import Owner, QueueSpec
from ferry.operator.settings import OperatorSettings

PLURAL = "queues"
PRUNE = [("v1", "ConfigMap"), ("v1", "Service"), ("apps/v1", "StatefulSet")]
BUDGET = ("policy/v1", "PodDisruptionBudget")
ORPHAN_WAITS = 60  # x 0.5 s: the garbage collector releases the pods, then the object goes


def _plan(rt: Runtime, owner: Owner, spec: QueueSpec) -> Plan:
    # An Unmanaged budget is the admins': never pruned (nor applied) by Ferry.
    prune = [*PRUNE, BUDGET] if queues.manages_budget(spec) else PRUNE
    return Plan(owner=owner, desired=queues.children(owner, spec, rt.defaults), prune=prune)


async def plan(rt: Runtime, body: Any) -> Plan | None:
    spec = parse_spec(QueueSpec, body, None)
    return None if spec is None else _plan(rt, owner_of(body), spec)


async def _broker_pass(rt: Runtime, owner: Owner, spec: QueueSpec, url: str, *,
                       fresh: bool) -> tuple[QueueStats | None, Failure | None]:
    """The queue on its broker, with the broker's token; nothing is sent to a refused one.

    A `fresh` Queue's (never reconciled) queue is PUT at once; otherwise its stats are read,
    and it is PUT only when it is missing or its settings differ from the spec's: a PUT is
    a write the broker makes durable, and the stats pass of every Queue every 10 s was 100
    fsynced writes a second at 1,000 Queues."""
    refused = tenancy.refusal(owner.namespace, spec, rt.settings.external_broker_namespaces)
    if refused is not None:
        return None, refused
    try:
        token = await broker_token(rt, owner.namespace, owner.name, spec, owner)
        settings = queues.broker_settings(spec)
        if not fresh:
            try:
                stats = await rt.brokers.queue_stats(url, token, owner.name)
            except BrokerTrouble as e:
                if e.problem is not Problem.MISSING:
                    raise
            else:
                if stats.settings == settings:
                    return stats, None
        return await rt.brokers.ensure_queue(url, token, owner.name, settings), None
    except TokenMissingError as e:
        return None, e.failure
    except BrokerTrouble as e:
        if e.problem is Problem.UNAUTHORIZED:
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
                await broker_token(rt, owner.namespace, owner.name, spec, owner,
                                   fresh=never_reconciled(body))
        previous = (body.get("status") or {}).get("conditions") or []
        storage: str | None = None
        if apply:
            planned = _plan(rt, owner, spec)
            if queues.manages_broker(spec):
                desired, storage = await _storage(rt, body, owner, planned.desired)
                planned = Plan(owner=owner, desired=desired, prune=planned.prune)
            if not await apply_or_degrade(rt, body, patch, planned):
                return
        ready, rollout, stuck, leader, sts = 0, None, None, None, None
        if queues.manages_broker(spec):
            name = queues.broker_name(owner.name)
            sts = rt.watched.get("apps/v1", "StatefulSet", owner.namespace, name)
            ready = int(((sts or {}).get("status") or {}).get("readyReplicas") or 0)
            pods = workload_pods(rt, sts)
            stuck = readiness.stuck(pods)
            if queues.on_postgres(spec):
                leader = queues.leader_of(pods)
            if not queues.served_elsewhere(spec, rt.settings.broker_url):
                # Ready only once the broker rolled out this spec, not on an older pod; of
                # brokers electing a leader, only the leader is ever Ready.
                rollout = (readiness.rollout_gap(sts, ready_wanted=queues.ready_wanted(spec))
                           if sts is not None else f"StatefulSet {name} is not created yet")
            # The stats pass keeps the last verdict; it builds the children (which it
            # does not apply) only when there is a verdict to keep.
            if not apply and sts is not None and volumes.last_block(previous) is not None:
                desired = _plan(rt, owner, spec).desired
                storage = volumes.still_blocked(
                    previous, next(m for m in desired if m["kind"] == "StatefulSet"), sts)
            if apply and sts is not None:
                await replace_stuck_pods(rt, body, sts, pods)
            if sts is not None and queues.on_postgres(spec) and spec.replicas > 1:
                await _roll(rt, body, sts, pods)  # every pass: the stats pass is the frequent one
        stats, failure = await _broker_pass(rt, owner, spec, url, fresh=never_reconciled(body))
        rollout = _rollout_after(rt, sts, failure, rollout)
        write_status(body, patch, queues.status(
            owner=owner, spec=spec, endpoint_url=url, ready_replicas=ready, stats=stats,
            failure=failure, previous=previous,
            now=datetime.now(UTC), rollout=rollout, stuck=stuck, storage=storage,
            leader=leader))
        RECONCILES.labels(kind, "ready" if stats else "not-ready").inc()


def _rollout_after(rt: Runtime, sts: Any, failure: Failure | None,
                   rollout: str | None) -> str | None:
    """What the broker's StatefulSet still lacks, read again once its broker did not answer:
    it may have stopped as its pod went (a roll) before the StatefulSet's status says so,
    and that is a broker starting again, not a Degraded queue."""
    if failure is None or rollout is not None or sts is None:
        return rollout
    return readiness.replacing(workload_pods(rt, sts),
                               int((sts.get("spec") or {}).get("replicas", 1)))


async def _roll(rt: Runtime, body: Any, sts: Any, pods: list[Any]) -> None:
    """Roll a replicated broker one pod at a time, the leader last (see reconcile.rolling):
    the pod's record goes into the Queue's status before the pod is deleted."""
    namespace = sts["metadata"]["namespace"]
    plan = rolling.next_step(sts, pods, rolling.Rolling.from_status(body.get("status")),
                             datetime.now(UTC))
    if plan.delete is None and plan.record == rolling.Rolling.from_status(body.get("status")):
        return
    # About to write or delete: decide again on the Queue as the API has it now (the body
    # may not show yet what this operator, or another one, recorded a moment ago).
    fresh = await rt.kube.get(API_VERSION, "Queue", namespace, body["metadata"]["name"])
    if fresh is None:
        return
    recorded = rolling.Rolling.from_status(fresh.get("status"))
    plan = rolling.next_step(sts, pods, recorded, datetime.now(UTC))
    if plan.record != recorded:
        await rt.kube.patch(API_VERSION, "Queue", namespace, body["metadata"]["name"],
                            {"status": {"rolling": plan.record and plan.record.for_status()}},
                            subresource="status")
    step = plan.delete
    if step is None:
        return
    if not await rt.kube.delete("v1", "Pod", namespace, step.pod, uid=step.uid):
        return  # gone already, or replaced: its record waits for the replacement
    CHILD_CHANGES.labels("Pod", "rolled").inc()
    which = "the leader, last" if step.leader else "a standby"
    kopf.info(body, reason="Rolled",
              message=f"deleted pod {step.pod} ({which}) to roll it to revision {step.revision}")


async def _storage(rt: Runtime, body: Any, owner: Owner,
                   desired: list[Manifest]) -> tuple[list[Manifest], str | None]:
    """Carry out a bigger spec.storage.size (see reconcile.volumes): the children to apply,
    and why the volume cannot grow when it cannot."""
    index = next(i for i, m in enumerate(desired) if m["kind"] == "StatefulSet")
    sts = desired[index]
    name = sts["metadata"]["name"]
    live = rt.watched.get("apps/v1", "StatefulSet", owner.namespace, name)
    if live is None or volumes.claim_size(live) == volumes.claim_size(sts):
        return desired, None
    claims = volumes.claim_names(live)
    first = await rt.kube.get("v1", "PersistentVolumeClaim", owner.namespace, claims[0]) \
        if claims else None
    class_name = volumes.class_name(live, first)
    storage_class = await rt.kube.get("storage.k8s.io/v1", "StorageClass", "", class_name) \
        if class_name else None
    growth = volumes.plan(sts, live, storage_class, class_name)
    if growth.step is volumes.Step.BLOCKED:
        kopf.warn(body, reason=Reason.STORAGE_NOT_EXPANDABLE, message=growth.message)
        return [*desired[:index], volumes.keep_live_size(sts, live), *desired[index + 1:]], \
            growth.message
    for claim in growth.claims:
        await rt.kube.patch("v1", "PersistentVolumeClaim", owner.namespace, claim,
                            volumes.claim_patch(growth.size))
    # The claim template is immutable: replace the StatefulSet, leaving its pods running.
    await rt.kube.delete("apps/v1", "StatefulSet", owner.namespace, name, propagation="Orphan")
    for _ in range(ORPHAN_WAITS):
        if await rt.kube.get("apps/v1", "StatefulSet", owner.namespace, name) is None:
            break
        await asyncio.sleep(0.5)
    kopf.info(body, reason="StorageExpanded",
              message=f"claims {', '.join(growth.claims)} grow to {growth.size}; "
                      f"StatefulSet/{name} replaced (its pods kept running)")
    return desired, None


async def finalize(rt: Runtime, body: Any, retry: int) -> None:
    """Delete policy: remove the queue from its broker, with bounded retries; Retain: keep it.

    An external broker the operator refuses is never called: the queue there is left alone.
    Either way its token leaves the operator's memory (a retry reads the Secret again)."""
    owner = owner_of(body)
    spec = QueueSpec.model_validate(body["spec"])
    try:
        await _delete(rt, body, owner, spec, retry)
    finally:
        forget(rt, owner.namespace, owner.name, spec)


async def _delete(rt: Runtime, body: Any, owner: Owner, spec: QueueSpec, retry: int) -> None:
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
