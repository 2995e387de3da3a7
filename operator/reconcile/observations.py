"""What the handlers saw when they talked to a broker, reduced to data the reconcilers judge."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Problem(StrEnum):
    UNREACHABLE = "unreachable"  # connection refused, timeouts: maybe temporary
    REJECTED = "rejected"  # the broker answered 4xx/5xx to a valid request
    MISSING = "missing"  # the queue or group does not exist on the broker
    NO_QUEUE = "no-queue"  # a ConsumerGroup names a Queue resource that does not exist
    UNAUTHORIZED = "unauthorized"  # the broker refused the token (401/403)
    NO_TOKEN = "no-token"  # the Secret with the broker's token is missing or lacks the key
    NOT_ALLOWED = "not-allowed"  # an external broker from a namespace the operator refuses


class Failure(BaseModel):
    model_config = ConfigDict(frozen=True)

    problem: Problem
    message: str
