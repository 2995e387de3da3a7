"""Ready / Progressing / Degraded conditions from one verdict.

A reconciler reduces what it saw to a `Verdict` (one phase, a reason, a message); the three
conditions follow from it, keeping lastTransitionTime when a condition's status is unchanged.
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
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


class Phase(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


class Reason(StrEnum):
    RECONCILED = "Reconciled"
    BROKER_STARTING = "BrokerStarting"
    BROKER_UNREACHABLE = "BrokerUnreachable"
    BROKER_REJECTED = "BrokerRejected"
    QUEUE_NOT_FOUND = "QueueNotFound"
    QUEUE_NOT_READY = "QueueNotReady"
    CHILDREN_NOT_READY = "ChildrenNotReady"
    APPLY_FAILED = "ApplyFailed"
    INVALID_SPEC = "InvalidSpec"


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)

    phase: Phase
    reason: Reason
    message: str


def broker_trouble(failure: Failure) -> Verdict:
    """A broker that cannot be reached or refuses a valid request degrades the resource."""
    reason = (Reason.BROKER_UNREACHABLE if failure.problem is Problem.UNREACHABLE
              else Reason.BROKER_REJECTED)
    return Verdict(phase=Phase.DEGRADED, reason=reason, message=failure.message)


def _stamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(
    verdict: Verdict,
    generation: int,
    previous: Sequence[Mapping[str, Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    """The three conditions for `verdict`; no side effects."""
    before = {c.get("type"): c for c in previous}
    out: list[dict[str, Any]] = []
    for kind in ConditionType:
        status = "True" if verdict.phase.value == kind.value else "False"
        old = before.get(kind.value)
        since = (
            old["lastTransitionTime"]
            if old and old.get("status") == status and old.get("lastTransitionTime")
            else _stamp(now)
        )
        out.append({
            "type": kind.value,
            "status": status,
            "reason": verdict.reason.value,
            "message": verdict.message,
            "lastTransitionTime": since,
            "observedGeneration": generation,
        })
    return out
