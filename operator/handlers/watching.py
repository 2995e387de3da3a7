"""Watches on the children the operator owns: drift is repaired when it happens, not polled for.

kopf's event handlers keep `Runtime.watched` current (the owners too, which also arrive as
events), so passes read children without a GET. A child changed or deleted by someone else
is compared with what its owner's pass would apply and re-applied at once; the initial
listing is left to the owners' own passes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from ferry.operator.clients.errors import KubeError
from ferry.operator.clients.watched import key_of
from ferry.operator.handlers.common import Planner, Runtime, apply_children, key, runtime
from ferry.operator.identity import KEDA_API_VERSION
from ferry.operator.reconcile import drift
from ferry.operator.reconcile.metadata import FIELD_MANAGER, GROUP, MANAGED_BY, VERSION

log = logging.getLogger("ferry.operator.watching")

# Every kind the operator creates as a child (the Custom Resources are OWNERS below), and
# the pods of its workloads (their templates carry the same label), read for rollouts.
CHILD_KINDS = [("v1", "configmaps"), ("v1", "services"), ("apps/v1", "statefulsets"),
               ("apps/v1", "deployments"), ("policy/v1", "poddisruptionbudgets"),
               ("autoscaling/v2", "horizontalpodautoscalers"), ("v1", "pods"),
               (KEDA_API_VERSION, "scaledobjects"),
               (KEDA_API_VERSION, "triggerauthentications")]
OWNERS = ["queues", "consumergroups", "telemetrypipelines"]
CHILD_SELECTOR = f"{MANAGED_BY}={FIELD_MANAGER}"


def _owner(rt: Runtime, obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    meta = obj["metadata"]
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            found = rt.watched.get(ref["apiVersion"], ref["kind"], meta["namespace"],
                                   ref["name"])
            if found is not None and found["metadata"]["uid"] == ref["uid"]:
                return found
    return None


async def observed(rt: Runtime, event: Mapping[str, Any], planners: Mapping[str, Planner]) -> None:
    """Record the event; re-apply the child when it no longer matches its owner's plan."""
    obj, kind = event["object"], event.get("type")
    before = rt.watched.get(*key_of(obj)) if kind == "MODIFIED" else None
    rt.watched.observe(kind, obj)
    if obj.get("kind") in planners:  # one of the operator's own resources
        rt.pacing.note(kind, obj)
    if before is not None and drift.only_status_moved(before, obj):
        return  # as in sync as it was: no plan to build (the resync timer is the safety net)
    owner = _owner(rt, obj) if kind is not None else None
    planner = planners.get(owner["kind"]) if owner is not None else None
    if owner is None or planner is None or owner["metadata"].get("deletionTimestamp"):
        return
    plan = await planner(rt, owner)
    wanted = next((m for m in plan.desired if key(m) == key(obj)), None) if plan else None
    if plan is None or wanted is None:
        return  # no longer desired: pruning is the owner's pass's business
    if kind == "DELETED" or drift.differs(wanted, obj):
        try:
            await apply_children(rt, owner, plan.owner, [wanted], [])
        except KubeError as e:
            log.warning("repairing %s of %s failed: %s", key(obj), key(owner), e)


def register(registry: kopf.OperatorRegistry, planners: Mapping[str, Planner]) -> None:
    async def on_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        await observed(runtime(memo), event, planners)

    for api_version, plural in CHILD_KINDS:
        kopf.on.event(api_version, plural, id="watch", labels={MANAGED_BY: FIELD_MANAGER},
                      registry=registry)(on_event)
    for plural in OWNERS:
        kopf.on.event(GROUP, VERSION, plural, id="watch", registry=registry)(on_event)
