"""What a finalizer does next, from the deletion policy and the last broker outcome."""

from __future__ import annotations

from enum import StrEnum

from ferry.operator.reconcile.observations import Failure, Problem
from ferry.operator.reconcile.specs import DeletionPolicy


class Step(StrEnum):
    DELETE_ON_BROKER = "DeleteOnBroker"  # call the broker, then ask again with the outcome
    RELEASE = "Release"  # done: remove the finalizer
    RETRY = "Retry"  # temporary failure: try again after a backoff
    GIVE_UP = "GiveUp"  # retries spent: warn and release, so the namespace is not stuck


def first_step(policy: DeletionPolicy) -> Step:
    return Step.DELETE_ON_BROKER if policy is DeletionPolicy.DELETE else Step.RELEASE


def after(failure: Failure | None, attempt: int, max_attempts: int) -> Step:
    """`attempt` counts from 0; after `max_attempts` failed attempts the finalizer gives up."""
    if failure is None or failure.problem in (Problem.MISSING, Problem.NO_QUEUE):
        return Step.RELEASE  # already gone is as good as deleted
    return Step.RETRY if attempt + 1 < max_attempts else Step.GIVE_UP

