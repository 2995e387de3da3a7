"""What every kind's handlers share: the runtime in kopf's memo, owners, applying children."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from ferry.kit import backoff
from ferry.operator.clients.brokers import Brokers
from ferry.operator.clients.errors import BrokerTrouble, KubeError, KubeNotFound
from ferry.operator.clients.kube import KubeClient
from ferry.operator.clients.metricsapis import MetricsApis
from ferry.operator.metrics import BROKER_FAILURES, CHILD_CHANGES, RECONCILES
from ferry.operator.reconcile import deletion, pausing, providers
from ferry.operator.reconcile.conditions import Phase, Reason, Verdict, conditions, paused
from ferry.operator.reconcile.metadata import GROUP, VERSION, Manifest, children_selector
from ferry.operator.reconcile.observations import Failure, Problem
from ferry.operator.reconcile.specs import Owner
from ferry.operator.settings import OperatorSettings


@dataclass
class Runtime:
    settings: OperatorSettings
    kube: KubeClient
    brokers: Brokers
    metrics_apis: MetricsApis = field(init=False)

    def __post_init__(self) -> None:
        self.metrics_apis = MetricsApis(self.kube, apiservice=providers.APISERVICE)


def runtime(memo: Any) -> Runtime:
    found = memo["runtime"]
    assert isinstance(found, Runtime)
    return found


def owner_of(body: Mapping[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(api_version=body["apiVersion"], kind=body["kind"], name=meta["name"],
                 namespace=meta["namespace"], uid=meta["uid"],
                 generation=meta.get("generation", 0))


def failure_of(trouble: BrokerTrouble) -> Failure:
    BROKER_FAILURES.labels(trouble.problem).inc()
    return Failure(problem=Problem(trouble.problem), message=trouble.message)


def controlled_by(obj: Mapping[str, Any], owner: Owner) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") == owner.uid and r.get("controller") for r in refs)


def key(obj: Mapping[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


async def apply_children(rt: Runtime, body: Any, owner: Owner, desired: Sequence[Manifest],
                         prune: Iterable[tuple[str, str]]) -> None:
    """Server-side apply every desired child; delete owned children no longer desired.

    Creation and drift repair (a child changed by someone else) each get an Event.
    """
    for manifest in desired:
        meta = manifest["metadata"]
        before = await rt.kube.get(manifest["apiVersion"], manifest["kind"], owner.namespace,
                                   meta["name"])
        after = await rt.kube.apply(manifest)
        if before is None:
            CHILD_CHANGES.labels(manifest["kind"], "created").inc()
            kopf.info(body, reason="Created", message=f"created {key(manifest)}")
        elif before["metadata"].get("resourceVersion") != after["metadata"].get("resourceVersion"):
            CHILD_CHANGES.labels(manifest["kind"], "updated").inc()
            kopf.info(body, reason="Updated", message=f"updated {key(manifest)}")
    wanted = {key(m) for m in desired}
    for api_version, kind in prune:
        try:
            found = await rt.kube.list(api_version, kind, owner.namespace,
                                       children_selector(owner))
        except KubeNotFound:
            continue  # the kind is not installed (KEDA's ScaledObject): nothing to prune
        for obj in found:
            # Only objects this owner controls: KEDA copies a ScaledObject's labels onto
            # the HPA it makes, and that HPA belongs to KEDA.
            if key(obj) not in wanted and controlled_by(obj, owner):
                await rt.kube.delete(api_version, kind, owner.namespace, obj["metadata"]["name"])
                CHILD_CHANGES.labels(kind, "pruned").inc()
                kopf.info(body, reason="Pruned", message=f"deleted {key(obj)}: no longer wanted")


def verdict_status(body: Any, verdict: Verdict) -> dict[str, Any]:
    generation = body["metadata"].get("generation", 0)
    return {"observedGeneration": generation,
            "conditions": conditions(verdict, generation,
                                     (body.get("status") or {}).get("conditions") or [],
                                     datetime.now(UTC))}


async def settle_deletion(settings: OperatorSettings, body: Any, what: str,
                          failure: Failure | None, retry: int) -> None:
    step = deletion.after(failure, retry, settings.delete_attempts)
    if step is deletion.Step.RELEASE:
        kopf.info(body, reason="Deleted", message=f"deleted {what}")
    elif step is deletion.Step.RETRY:
        assert failure is not None
        delay = backoff.ceiling(retry, settings.retry_base_seconds,
                                         settings.retry_cap_seconds)
        kopf.warn(body, reason="DeleteFailed",
                  message=f"deleting {what} failed (attempt {retry + 1} of "
                          f"{settings.delete_attempts}), retrying in {delay:g}s: "
                          f"{failure.message}")
        raise kopf.TemporaryError(failure.message, delay=delay)
    else:
        assert failure is not None
        kopf.warn(body, reason="DeleteAbandoned",
                  message=f"gave up deleting {what} after {settings.delete_attempts} attempts; "
                          f"releasing the finalizer, broker data may remain: {failure.message}")


async def workload_pods(rt: Runtime, workload: Mapping[str, Any] | None) -> list[Any]:
    """The pods a Deployment or StatefulSet selects (none before it exists)."""
    if workload is None:
        return []
    match = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
    return await rt.kube.list("v1", "Pod", workload["metadata"]["namespace"], selector)


Reconcile = Callable[..., Awaitable[None]]
Finalize = Callable[[Runtime, Any, int], Awaitable[None]]


def _hold(body: Any, patch: kopf.Patch) -> bool:
    """While ferry.dev/reconcile is `paused`, nothing is written for the resource except the
    ReconciliationPaused condition (once): True when it is paused (the caller stops)."""
    if not pausing.is_paused(body["metadata"].get("annotations") or {}):
        return False
    previous = (body.get("status") or {}).get("conditions") or []
    if not pausing.shows_paused(previous):
        patch["status"] = {"conditions": paused(previous, body["metadata"].get("generation", 0),
                                                datetime.now(UTC))}
        kopf.info(body, reason=Reason.PAUSED.value,
                  message="reconciliation paused by the ferry.dev/reconcile annotation")
    return True


def register_kind(registry: kopf.OperatorRegistry, settings: OperatorSettings, plural: str,
                  reconcile: Reconcile, finalize: Finalize | None = None) -> None:
    """Level-based wiring for one kind: react to changes, re-apply on a timer (drift repair),
    poll stats on a faster timer, and finalize deletions (kopf adds the finalizer)."""
    resource = (GROUP, VERSION, plural)

    @kopf.on.resume(*resource, id="reconcile", registry=registry)
    @kopf.on.create(*resource, id="reconcile", registry=registry)
    @kopf.on.update(*resource, id="reconcile", field="spec", registry=registry)
    @kopf.on.update(*resource, id="pause", field=pausing.FIELD, registry=registry)
    async def changed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        if not _hold(body, patch):
            await reconcile(runtime(memo), body, patch, apply=True)

    @kopf.timer(*resource, id="resync", interval=settings.resync_seconds, registry=registry)
    async def resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        if not _hold(body, patch):
            await reconcile(runtime(memo), body, patch, apply=True)

    @kopf.timer(*resource, id="stats", interval=settings.stats_seconds, registry=registry)
    async def stats(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        # Only a pass that applied a generation's children may report that generation
        # observed: a stats pass racing a spec change would call old children Ready.
        if _hold(body, patch) or pausing.unapplied(body):
            return
        await reconcile(runtime(memo), body, patch, apply=False)

    if finalize is not None:
        run_finalizer = finalize

        @kopf.on.delete(*resource, id="finalize", registry=registry)
        async def deleted(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
            await run_finalizer(runtime(memo), body, retry)


SpecT = TypeVar("SpecT", bound=BaseModel)


def parse_spec(model: type[SpecT], body: Any, patch: kopf.Patch) -> SpecT | None:
    """The typed spec, or None with Degraded/InvalidSpec in status (the CRD and the model
    disagree: a bug to surface, not to crash on)."""
    try:
        return model.model_validate(body["spec"])
    except ValidationError as e:
        patch["status"] = verdict_status(body, Verdict(
            phase=Phase.DEGRADED, reason=Reason.INVALID_SPEC, message=str(e)))
        RECONCILES.labels(body["kind"], "invalid").inc()
        return None


async def apply_or_degrade(rt: Runtime, body: Any, patch: kopf.Patch, owner: Owner,
                           desired: Sequence[Manifest],
                           prune: Iterable[tuple[str, str]]) -> bool:
    """apply_children; on a Kubernetes error a Warning Event and Degraded/ApplyFailed."""
    try:
        await apply_children(rt, body, owner, desired, prune)
    except KubeError as e:
        kopf.warn(body, reason="ApplyFailed", message=str(e))
        patch["status"] = verdict_status(body, Verdict(
            phase=Phase.DEGRADED, reason=Reason.APPLY_FAILED, message=str(e)))
        RECONCILES.labels(body["kind"], "apply-failed").inc()
        return False
    return True
