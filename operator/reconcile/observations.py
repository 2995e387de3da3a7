"""What the handlers saw when they talked to a broker, reduced to data the reconcilers judge."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ferry.operator.identity import Problem as Problem


class Failure(BaseModel):
    model_config = ConfigDict(frozen=True)

    problem: Problem
    message: str
