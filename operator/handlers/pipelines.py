"""TelemetryPipeline handlers: apply the children, read them back into status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from ferry.operator.handlers.common import (
    Plan,
    Runtime,
    apply_or_degrade,
    key,
    owner_of,
    parse_spec,
    register_kind,
    workload_pods,
    write_status,
)
from ferry.operator.metrics import RECONCILE_SECONDS, RECONCILES
from ferry.operator.reconcile import pipelines, queues, readiness
from ferry.operator.reconcile.metadata import API_VERSION
from ferry.operator.reconcile.specs import Owner, TelemetryPipelineSpec
from ferry.operator.settings import OperatorSettings

PLURAL = "telemetrypipelines"
PRUNE = [(API_VERSION, "Queue"), (API_VERSION, "ConsumerGroup"), ("apps/v1", "StatefulSet"),
         ("apps/v1", "Deployment"), ("v1", "Service")]


def _plan(rt: Runtime, owner: Owner, spec: TelemetryPipelineSpec) -> Plan:
    pod_url = queues.in_cluster_endpoint(owner.namespace, pipelines.queue_name(owner), spec.queue)
    return Plan(owner=owner, desired=pipelines.children(owner, spec, pod_url, rt.defaults),
                prune=PRUNE)


async def plan(rt: Runtime, body: Any) -> Plan | None:
    spec = parse_spec(TelemetryPipelineSpec, body, None)
    return None if spec is None else _plan(rt, owner_of(body), spec)


async def reconcile(rt: Runtime, body: Any, patch: kopf.Patch, *, apply: bool) -> None:
    kind = "TelemetryPipeline"
    with RECONCILE_SECONDS.labels(kind).time():
        owner = owner_of(body)
        spec = parse_spec(TelemetryPipelineSpec, body, patch)
        if spec is None:
            return
        queue = pipelines.queue_name(owner)
        planned = _plan(rt, owner, spec)
        desired = planned.desired
        if apply and not await apply_or_degrade(rt, body, patch, planned):
            return
        observed: dict[str, Any] = {}
        for child in desired:
            found = rt.watched.get(child["apiVersion"], child["kind"], owner.namespace,
                                   child["metadata"]["name"])
            if found is not None:
                observed[key(child)] = found
        stuck: dict[str, str] = {}
        for name, obj in observed.items():
            if readiness.is_workload(obj) and not readiness.is_ready(obj):
                why = readiness.stuck(workload_pods(rt, obj))
                if why is not None:
                    stuck[name] = why
        status = pipelines.status(
            owner=owner, desired=desired, observed=observed,
            endpoint_url=queues.endpoint(owner.namespace, queue, spec.queue,
                                         rt.settings.broker_url),
            previous=(body.get("status") or {}).get("conditions") or [], now=datetime.now(UTC),
            stuck=stuck)
        write_status(body, patch, status)
        RECONCILES.labels(kind, "observed").inc()


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    register_kind(registry, settings, PLURAL, reconcile)
