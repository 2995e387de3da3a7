"""Status conditions from one verdict: kstatus's Ready / Reconciling / Stalled, and Ferry's
earlier Progressing / Degraded beside them.

A reconciler reduces what it saw to a `Verdict` (one phase, a reason, a message); the
conditions follow from it, each with its own status and lastTransitionTime (kept while its
status is unchanged), reason, message and observedGeneration (Kubernetes API conventions):

    phase        Ready  Reconciling  Stalled  Progressing  Degraded    kstatus
    Ready        True   False        False    False        False       Current
    Progressing  False  True         False    True         False       InProgress
    Degraded     False  False        True     False        True        Failed

Reconciling and Stalled are what kstatus (cli-utils: Flux, kpt, Config Sync) reads; Ready is
what `kubectl wait --for=condition=Ready` and most dashboards read. A paused resource
(annotation ferry.dev/reconcile: paused) keeps them as they were and gains
ReconciliationPaused=True; resuming sets it False.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from ferry.operator.reconcile.observations import Failure, Problem


class ConditionType(StrEnum):
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


PAUSED = "ReconciliationPaused"  # a condition only paused (or once-paused) resources carry

# Which phase sets each condition True.
_TRUE_IN = {
    ConditionType.READY: "Ready",
    ConditionType.RECONCILING: "Progressing",
    ConditionType.STALLED: "Degraded",
    ConditionType.PROGRESSING: "Progressing",
    ConditionType.DEGRADED: "Degraded",
}


class Phase(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


class Reason(StrEnum):
    RECONCILED = "Reconciled"
    BROKER_STARTING = "BrokerStarting"
    BROKER_UNREACHABLE = "BrokerUnreachable"
    BROKER_REJECTED = "BrokerRejected"
    BROKER_UNAUTHORIZED = "BrokerUnauthorized"
    TOKEN_NOT_FOUND = "TokenNotFound"
    EXTERNAL_BROKER_NOT_ALLOWED = "ExternalBrokerNotAllowed"
    QUEUE_NOT_FOUND = "QueueNotFound"
    QUEUE_NOT_READY = "QueueNotReady"
    CHILDREN_NOT_READY = "ChildrenNotReady"
    APPLY_FAILED = "ApplyFailed"
    INVALID_SPEC = "InvalidSpec"
    ROLLING_OUT = "RollingOut"
    PODS_FAILING = "PodsFailing"
    PAUSED = "ReconciliationPaused"
    RESUMED = "ReconciliationResumed"
    STORAGE_NOT_EXPANDABLE = "StorageNotExpandable"


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)

    phase: Phase
    reason: Reason
    message: str


_REASONS = {
    Problem.UNREACHABLE: Reason.BROKER_UNREACHABLE,
    Problem.UNAUTHORIZED: Reason.BROKER_UNAUTHORIZED,
    Problem.NO_TOKEN: Reason.TOKEN_NOT_FOUND,
    Problem.NOT_ALLOWED: Reason.EXTERNAL_BROKER_NOT_ALLOWED,
}


def broker_trouble(failure: Failure) -> Verdict:
    """A broker that cannot be reached, refuses the token or a valid request, a token that
    cannot be read or an external broker the operator refuses degrades the resource."""
    reason = _REASONS.get(failure.problem, Reason.BROKER_REJECTED)
    return Verdict(phase=Phase.DEGRADED, reason=reason, message=failure.message)


def holds(conditions: Sequence[Mapping[str, Any]], *kinds: str) -> bool:
    """Whether a condition of one of `kinds` has status True."""
    return any(c.get("type") in kinds and c.get("status") == "True" for c in conditions)


def _stamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_condition(kind: str, status: str, reason: str, message: str, generation: int,
                   old: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    since = (old["lastTransitionTime"]
             if old and old.get("status") == status and old.get("lastTransitionTime")
             else _stamp(now))
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since, "observedGeneration": generation}


def conditions(
    verdict: Verdict,
    generation: int,
    previous: Sequence[Mapping[str, Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    """The conditions for `verdict` (a ReconciliationPaused one is carried over as it was,
    set False: this pass reconciled); no side effects."""
    before = {c.get("type"): c for c in previous}
    out = [make_condition(kind.value, "True" if _TRUE_IN[kind] == verdict.phase.value else "False",
                          verdict.reason.value, verdict.message, generation,
                          before.get(kind.value), now)
           for kind in ConditionType]
    if PAUSED in before:
        out.append(make_condition(PAUSED, "False", Reason.RESUMED.value,
                                  "reconciling again: the ferry.dev/reconcile annotation is gone",
                                  generation, before[PAUSED], now))
    return out


def paused(previous: Sequence[Mapping[str, Any]], generation: int,
           now: datetime) -> list[dict[str, Any]]:
    """`previous` as it was, with ReconciliationPaused=True: nothing else is judged while
    paused (the figures would be stale); no side effects."""
    before = {c.get("type"): c for c in previous}
    kept = [dict(c) for c in previous if c.get("type") != PAUSED]
    return [*kept, make_condition(PAUSED, "True", Reason.PAUSED.value,
                                  "ferry.dev/reconcile: paused; the operator makes no changes "
                                  "for this resource until the annotation is removed",
                                  generation, before.get(PAUSED), now)]
