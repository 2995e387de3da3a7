"""What every kind's handlers share: the runtime in kopf's memo, owners, applying children."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from ferry.kit import backoff
from ferry.operator.clients.brokers import Brokers
from ferry.operator.clients.errors import BrokerTrouble, KubeError
from ferry.operator.clients.kube import KubeClient
from ferry.operator.clients.metricsapis import MetricsApis
from ferry.operator.clients.watched import Watched
from ferry.operator.metrics import BROKER_FAILURES, CHILD_CHANGES, DEFERRED_PASSES, RECONCILES
from ferry.operator.reconcile import (
    deletion,
    drift,
    noticing,
    pausing,
    providers,
    readiness,
    rollouts,
)
from ferry.operator.reconcile.conditions import Phase, Reason, Verdict, conditions, paused
from ferry.operator.reconcile.metadata import GROUP, VERSION, Manifest
from ferry.operator.reconcile.observations import Failure
from ferry.operator.reconcile.pacing import Pacing
from ferry.operator.reconcile.specs import Owner
from ferry.operator.reconcile.workloads import PodDefaults
from ferry.operator.settings import OperatorSettings

log = logging.getLogger("ferry.operator.children")

Key = tuple[str, str, str, str]  # apiVersion, kind, namespace, name


@dataclass
class UpgradeSlot:
    """The one workload allowed to roll out a new image (see reconcile.rollouts)."""

    holder: Key | None = None
    images: dict[str, str] = field(default_factory=dict)  # what the holder rolls out

    async def admit(self, rt: Runtime, key: Key, images: dict[str, str]) -> bool:
        holder = self.holder
        if holder not in (None, key):
            assert holder is not None
            current = await rt.read(*holder)
            # A copy still showing the old images (a watch event older than our apply) says
            # nothing about the new rollout: done only when it runs what was admitted.
            if current is not None and (rollouts.images(current) != self.images
                                        or readiness.rollout_gap(current) is not None):
                return False
            if self.holder != holder:  # someone took the slot meanwhile
                return False
        self.holder, self.images = key, dict(images)
        return True


@dataclass
class Runtime:
    settings: OperatorSettings
    kube: KubeClient
    brokers: Brokers
    defaults: PodDefaults
    upgrades: UpgradeSlot = field(default_factory=UpgradeSlot)
    metrics_apis: MetricsApis = field(init=False)
    watched: Watched = field(default_factory=Watched)
    tokens: dict[tuple[str, str, str], str] = field(default_factory=dict)  # ns, Secret, key
    pacing: Pacing = field(default_factory=Pacing)  # new resources first

    def __post_init__(self) -> None:
        self.metrics_apis = MetricsApis(self.kube, apiservice=providers.APISERVICE)

    async def read(self, api_version: str, kind: str, namespace: str,
                   name: str) -> dict[str, Any] | None:
        """An object from the watch; a GET when the watch has not delivered it (not listed
        yet, or a kind the operator does not watch). KubeError when the GET fails."""
        found = self.watched.get(api_version, kind, namespace, name)
        if found is not None:
            return found
        return await self.kube.get(api_version, kind, namespace, name)


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
    return Failure(problem=trouble.problem, message=trouble.message)


def never_reconciled(body: Mapping[str, Any]) -> bool:
    """No pass has written this object's status yet: a new object, whose children and token
    Secret (if any) are still to be made."""
    return not (body.get("status") or {}).get("conditions")


def key(obj: Mapping[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


async def apply_children(rt: Runtime, body: Any, owner: Owner, desired: Sequence[Manifest],
                         prune: Iterable[tuple[str, str]]) -> None:
    """Server-side apply each desired child that is missing or has drifted from the watched
    copy; delete owned children of the `prune` kinds that are no longer desired.

    Reads come from the watch cache (a GET only for a workload it has not listed yet): an
    object in sync costs no request.
    Creations, drift repairs (a child changed by someone else) and prunes get one Event each
    per pass, naming the children.
    """
    done: dict[str, list[str]] = {"Created": [], "Updated": [], "Pruned": []}
    fresh = never_reconciled(body)
    for manifest in desired:
        meta = manifest["metadata"]
        slot = (manifest["apiVersion"], manifest["kind"], owner.namespace, meta["name"])
        # A workload not listed by the watch yet (the operator just started) is asked for
        # once: an upgrade must not pass for a creation. An owner never reconciled has no
        # workload of its own to upgrade: a GET per new object (a 404) was 5% of a burst's
        # requests.
        live = (await rt.read(*slot) if readiness.is_workload(manifest) and not fresh
                else rt.watched.get(*slot))
        if live is not None and rollouts.changes_image(manifest, live):
            if await rt.upgrades.admit(rt, slot, rollouts.images(manifest)):
                kopf.info(body, reason="Upgrading", message=f"rolling {key(manifest)} out to "
                          f"{', '.join(sorted(set(rollouts.images(manifest).values())))}")
            else:  # another workload is rolling out: this one's turn comes later
                manifest = rollouts.keep_images(manifest, live)
        if live is not None:
            where = drift.difference(manifest, live)
            if where is None:
                continue
            log.debug("%s drifted at %s: applying it", key(manifest), where)
        after, created = await rt.kube.apply(manifest)
        rt.watched.observe("MODIFIED", after, owned=True)  # `after` is read below: not changed
        # Without a watched copy (the watch has not listed yet) an unchanged object cannot
        # be told from a repaired one: only a creation is reported then.
        changed = live is not None and (live["metadata"].get("resourceVersion")
                                        != after["metadata"].get("resourceVersion"))
        if created or changed:
            what = "created" if created else "updated"
            CHILD_CHANGES.labels(manifest["kind"], what).inc()
            done[what.capitalize()].append(key(manifest))
    wanted = {key(m) for m in desired}
    kinds = set(prune)
    for obj in rt.watched.owned_by(owner.uid):
        if (obj["apiVersion"], obj["kind"]) in kinds and key(obj) not in wanted:
            await rt.kube.delete(obj["apiVersion"], obj["kind"], owner.namespace,
                                 obj["metadata"]["name"])
            rt.watched.observe("DELETED", obj)
            CHILD_CHANGES.labels(obj["kind"], "pruned").inc()
            done["Pruned"].append(key(obj))
    verbs = {"Created": "created", "Updated": "repaired drift of", "Pruned": "deleted (no "
             "longer wanted)"}
    for reason, keys in done.items():
        if keys:
            kopf.info(body, reason=reason, message=f"{verbs[reason]} {', '.join(keys)}")


def write_status(body: Any, patch: kopf.Patch, status: dict[str, Any]) -> bool:
    """Put `status` into the patch only when a reader would notice the change."""
    if not noticing.noticeable(body.get("status"), status):
        return False
    patch["status"] = status
    return True


def jitter(interval: float) -> Callable[..., float]:
    """A timer's first delay, spread over one interval so objects created together (or found
    together when the operator starts) do not all come due in the same second."""
    def delay(**_: Any) -> float:
        return random.uniform(0, interval)
    return delay


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


def workload_pods(rt: Runtime, workload: Mapping[str, Any] | None) -> list[Any]:
    """The pods a Deployment or StatefulSet selects (none before it exists), from the watch:
    their template carries Ferry's managed-by label, so they are watched like children.

    A StatefulSet's pods are read from the index by owner (it controls them itself): a scan
    of every pod in the namespace, each pass of each Queue, was 6% of the operator's samples
    with 1,000 Queues. A Deployment's pods belong to its ReplicaSets: those are scanned."""
    if workload is None:
        return []
    match = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if workload.get("kind") == "StatefulSet":
        wanted = match.items()
        return [o for o in rt.watched.owned_by(workload["metadata"]["uid"])
                if o["kind"] == "Pod"
                and wanted <= (o["metadata"].get("labels") or {}).items()]
    return rt.watched.matching("v1", "Pod", workload["metadata"]["namespace"], match)


SpecT = TypeVar("SpecT", bound=BaseModel)


@dataclass(frozen=True)
class Plan:
    """What a kind's pass applies for one object: its children, and the kinds it prunes."""

    owner: Owner
    desired: list[Manifest]
    prune: Sequence[tuple[str, str]]


Planner = Callable[[Runtime, Any], Awaitable["Plan | None"]]


def planner(model: type[SpecT], children: Callable[[Owner, SpecT], list[Manifest]],
            prune: Sequence[tuple[str, str]]) -> Planner:
    """The plan of a kind whose children follow from its owner and spec alone."""
    async def plan(rt: Runtime, body: Any) -> Plan | None:
        spec = parse_spec(model, body, None)
        if spec is None:
            return None
        owner = owner_of(body)
        return Plan(owner=owner, desired=children(owner, spec), prune=prune)
    return plan


async def replace_stuck_pods(rt: Runtime, body: Any, workload: Mapping[str, Any],
                             pods: Sequence[Mapping[str, Any]]) -> None:
    """Delete a StatefulSet's pods that cannot start and are of an older revision, so a
    fixed spec rolls out (readiness.stale_and_stuck says why the controller would not)."""
    namespace = workload["metadata"]["namespace"]
    for name in readiness.stale_and_stuck(workload, pods):
        await rt.kube.delete("v1", "Pod", namespace, name)
        CHILD_CHANGES.labels("Pod", "replaced").inc()
        kopf.info(body, reason="Replaced",
                  message=f"deleted pod {name}: it cannot start and is of an older revision "
                          f"than {key(workload)} now wants")


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


def _deferred(rt: Runtime, body: kopf.Body, timer: str, interval: float) -> bool:
    """This timer pass waits for new resources (reconcile.pacing), counted."""
    if not rt.pacing.skip(body, timer, interval):
        return False
    DEFERRED_PASSES.labels(body["kind"], timer).inc()
    return True


def register_kind(registry: kopf.OperatorRegistry, settings: OperatorSettings, plural: str,
                  reconcile: Reconcile, finalize: Finalize | None = None) -> None:
    """Level-based wiring for one kind: react to changes, compare the children with their
    watched copies on a timer (a safety net: child events repair drift at once,
    handlers/watching.py), poll stats on a faster timer, and finalize deletions (kopf adds
    the finalizer). Timers start at a random point of their interval, and leave an object
    alone until a change handler has reconciled it once."""
    resource = (GROUP, VERSION, plural)

    # kopf keeps each handler's progress in an annotation ferry.dev/<id>: no handler may be
    # called "reconcile", whose annotation is the user's pause switch.
    @kopf.on.resume(*resource, id="converge", registry=registry)
    @kopf.on.create(*resource, id="converge", registry=registry)
    @kopf.on.update(*resource, id="converge", field="spec", registry=registry)
    @kopf.on.update(*resource, id="pause", field=pausing.FIELD, registry=registry)
    async def converge(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        if not _hold(body, patch):
            await reconcile(runtime(memo), body, patch, apply=True)

    @kopf.timer(*resource, id="resync", interval=settings.resync_seconds,
                initial_delay=jitter(settings.resync_seconds), registry=registry)
    async def resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        # A new object's first pass is its creation's (a timer starts at creation and ran
        # alongside it under a burst: both made the token Secret, one got a 409 and a GET).
        rt = runtime(memo)
        if never_reconciled(body) or _deferred(rt, body, "resync", settings.resync_seconds):
            return
        if not _hold(body, patch):
            await reconcile(rt, body, patch, apply=True)

    @kopf.timer(*resource, id="stats", interval=settings.stats_seconds,
                initial_delay=jitter(settings.stats_seconds), registry=registry)
    async def stats(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        # Only a pass that applied a generation's children may report that generation
        # observed: a stats pass racing a spec change would call old children Ready. Nor
        # may it come first: before its children and token Secret exist, a new object's
        # stats pass (its timer starts at creation) read a Secret that was not there yet
        # and reported it missing.
        rt = runtime(memo)
        if never_reconciled(body) or _deferred(rt, body, "stats", settings.stats_seconds):
            return
        if _hold(body, patch) or pausing.unapplied(body):
            return
        await reconcile(rt, body, patch, apply=False)

    if finalize is not None:
        run_finalizer = finalize

        @kopf.on.delete(*resource, id="finalize", registry=registry)
        async def deleted(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
            await run_finalizer(runtime(memo), body, retry)


def parse_spec(model: type[SpecT], body: Any, patch: kopf.Patch | None) -> SpecT | None:
    """The typed spec, or None with Degraded/InvalidSpec in status (the CRD and the model
    disagree: a bug to surface, not to crash on). Without a patch, just None."""
    try:
        return model.model_validate(body["spec"])
    except ValidationError as e:
        if patch is None:
            return None
        patch["status"] = verdict_status(body, Verdict(
            phase=Phase.DEGRADED, reason=Reason.INVALID_SPEC, message=str(e)))
        RECONCILES.labels(body["kind"], "invalid").inc()
        return None


async def apply_or_degrade(rt: Runtime, body: Any, patch: kopf.Patch, plan: Plan) -> bool:
    """apply_children; on a Kubernetes error a Warning Event and Degraded/ApplyFailed.

    An API server that did not answer in time, or answered 429 or 5xx (a burst of objects
    created at once), is asked again within seconds (kopf.TemporaryError, jittered), not at
    the next resync: nothing was wrong with the object."""
    try:
        await apply_children(rt, body, plan.owner, plan.desired, plan.prune)
    except KubeError as e:
        if e.transient:
            RECONCILES.labels(body["kind"], "api-busy").inc()
            raise kopf.TemporaryError(str(e), delay=random.uniform(
                rt.settings.retry_base_seconds, 2 * rt.settings.retry_base_seconds)) from e
        kopf.warn(body, reason="ApplyFailed", message=str(e))
        patch["status"] = verdict_status(body, Verdict(
            phase=Phase.DEGRADED, reason=Reason.APPLY_FAILED, message=str(e)))
        RECONCILES.labels(body["kind"], "apply-failed").inc()
        return False
    return True
