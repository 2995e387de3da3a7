"""ConsumerGroup handlers: the group on its queue's broker, owned children, stats in status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from ferry.operator.clients.errors import BrokerTrouble, KubeError
from ferry.operator.handlers.autoscaling import (
    autoscale,
    forget_scaling,
    keep_deletion_costs,
    wake_on_first_message,
)
from ferry.operator.handlers.common import (
    Plan,
    Runtime,
    apply_or_degrade,
    failure_of,
    owner_of,
    parse_spec,
    register_kind,
    runtime,
    settle_deletion,
    write_status,
)
from ferry.operator.handlers.tokens import TokenMissingError, broker_token
from ferry.operator.metrics import RECONCILE_SECONDS, RECONCILES
from ferry.operator.reconcile import consumergroups, deletion, keda, providers, queues, tenancy
from ferry.operator.reconcile.metadata import API_VERSION, GROUP, VERSION
from ferry.operator.reconcile.observations import Failure, Problem
from ferry.operator.reconcile.specs import (
    Autoscaling,
    ConsumerGroupSpec,
    KeyRef,
    Owner,
    QueueSpec,
)
from ferry.operator.settings import OperatorSettings

PLURAL = "consumergroups"
WAKER_RETRY_SECONDS = 2.0
PRUNE = [("autoscaling/v2", "HorizontalPodAutoscaler"), (keda.API_VERSION, keda.KIND),
         (keda.API_VERSION, keda.AUTH_KIND)]


@dataclass(frozen=True)
class QueueBroker:
    """Where a group's Queue lives, and the token its broker wants."""

    url: str
    token: str | None
    token_ref: KeyRef


async def queue_broker(rt: Runtime, namespace: str, queue: str) -> QueueBroker | Failure:
    """The broker of the named Queue (from the watch; a GET while the watch has not seen it),
    or why the group cannot use it."""
    try:
        found = await rt.read(API_VERSION, "Queue", namespace, queue)
    except KubeError as e:
        return Failure(problem=Problem.UNREACHABLE, message=f"cannot read Queue {queue}: {e}")
    if found is None:
        return Failure(problem=Problem.NO_QUEUE, message=f"no Queue {queue}")
    spec = QueueSpec.model_validate(found["spec"])
    refused: Failure | None = tenancy.refusal(namespace, spec,
                                              rt.settings.external_broker_namespaces)
    if refused is not None:
        return refused
    try:
        token = await broker_token(rt, namespace, queue, spec)
    except TokenMissingError as e:
        missing: Failure = e.failure
        return missing
    return QueueBroker(url=queues.endpoint(namespace, queue, spec, rt.settings.broker_url),
                       token=token, token_ref=tenancy.token_ref(queue, spec))


async def choose_provider(rt: Runtime, spec: Autoscaling | None) -> providers.Choice | None:
    """Who scales the group, from what the cluster offers (None without autoscaling)."""
    if spec is None:
        return None
    offered = await rt.metrics_apis.offered()
    return providers.choose(spec.provider, providers.observed(
        registered=offered.registered, served_by=offered.served_by,
        metric_names=offered.metric_names, keda_installed=offered.keda_installed))


async def _planned(rt: Runtime, body: Any, spec: ConsumerGroupSpec
                   ) -> tuple[Plan, QueueBroker | Failure, providers.Choice | None]:
    owner = owner_of(body)
    broker = await queue_broker(rt, owner.namespace, spec.queue)
    found = broker if isinstance(broker, QueueBroker) else None
    scaling = await choose_provider(rt, spec.autoscaling)
    desired = consumergroups.children(
        owner, spec, endpoint=found.url if found else None,
        provider=scaling.provider if scaling else None,
        token=found.token_ref if found else None)
    return Plan(owner=owner, desired=desired, prune=PRUNE), broker, scaling


async def plan(rt: Runtime, body: Any) -> Plan | None:
    spec = parse_spec(ConsumerGroupSpec, body, None)
    return None if spec is None else (await _planned(rt, body, spec))[0]


async def reconcile(rt: Runtime, body: Any, patch: kopf.Patch, *, apply: bool) -> None:
    kind = "ConsumerGroup"
    with RECONCILE_SECONDS.labels(kind).time():
        owner = owner_of(body)
        spec = parse_spec(ConsumerGroupSpec, body, patch)
        if spec is None:
            return
        planned, broker, scaling = await _planned(rt, body, spec)
        if apply and not await apply_or_degrade(rt, body, patch, planned):
            return
        stats, failure = None, broker if isinstance(broker, Failure) else None
        found = broker if isinstance(broker, QueueBroker) else None
        if found is not None:
            try:
                stats = await rt.brokers.ensure_group(found.url, found.token, spec.queue,
                                                      owner.name,
                                                      consumergroups.group_settings(spec))
            except BrokerTrouble as e:
                failure = failure_of(e)
        status = consumergroups.status(
            owner=owner, spec=spec, endpoint_url=found.url if found else None, stats=stats,
            failure=failure, previous=(body.get("status") or {}).get("conditions") or [],
            now=datetime.now(UTC), scaling=scaling)
        if found is not None:
            status["tokenSecret"] = found.token_ref.model_dump()
        if spec.autoscaling is not None and scaling is not None:
            status.update(await autoscale(rt, body, owner, spec.autoscaling, stats,
                                          scaling.provider))
            if stats is not None:
                await keep_deletion_costs(rt, body, owner, spec.autoscaling, stats)
        write_status(body, patch, status)
        RECONCILES.labels(kind, "ready" if stats else "not-ready").inc()


async def finalize(rt: Runtime, body: Any, retry: int) -> None:
    """Delete policy: remove the group from its broker; Retain: keep it. Either way its
    autoscaling figures leave /metrics (a gone group has no replicas to report)."""
    owner = owner_of(body)
    spec = ConsumerGroupSpec.model_validate(body["spec"])
    try:
        await _delete(rt, body, owner, spec, retry)
    finally:
        forget_scaling(owner)


async def _delete(rt: Runtime, body: Any, owner: Owner, spec: ConsumerGroupSpec,
                  retry: int) -> None:
    what = f"group {owner.name} of queue {spec.queue}"
    if deletion.first_step(spec.deletion_policy) is deletion.Step.RELEASE:
        kopf.info(body, reason="Retained", message=f"deletionPolicy Retain: {what} is kept")
        return
    broker = await queue_broker(rt, owner.namespace, spec.queue)
    failure: Failure | None = None
    if isinstance(broker, QueueBroker):
        try:
            await rt.brokers.delete_group(broker.url, broker.token, spec.queue, owner.name)
        except BrokerTrouble as e:
            failure = failure_of(e)
    elif broker.problem is not Problem.NO_QUEUE:
        failure = broker
    await settle_deletion(rt.settings, body, what, failure, retry)


async def waker(rt: Runtime, body: Any, stopped: kopf.DaemonStopped) -> None:
    """Wake on the first message: long polls on the broker while the target sits at 0.

    Otherwise (and after a broker or API server failure) it looks again every stats
    period; the stats timer's own 0 -> 1 step stays as the fallback.
    """
    while not stopped:
        again = False
        try:
            spec = ConsumerGroupSpec.model_validate(body["spec"])
            if spec.autoscaling is not None:
                owner = owner_of(body)
                broker = await queue_broker(rt, owner.namespace, spec.queue)
                if isinstance(broker, QueueBroker):
                    again = await wake_on_first_message(rt, body, owner, spec.autoscaling,
                                                        broker.url, broker.token, spec.queue)
        except (ValidationError, KubeError, BrokerTrouble):
            # The group may not be on its broker yet: try again soon.
            await stopped.wait(min(rt.settings.stats_seconds, WAKER_RETRY_SECONDS))
            continue
        if not again:
            await stopped.wait(rt.settings.stats_seconds)


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    register_kind(registry, settings, PLURAL, reconcile, finalize)

    @kopf.daemon(GROUP, VERSION, PLURAL, id="waker", cancellation_timeout=1.0,
                 registry=registry)
    async def wake(body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo,
                   **_: Any) -> None:
        await waker(runtime(memo), body, stopped)
