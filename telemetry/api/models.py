"""Wire models of the query API; the OpenAPI document is generated from these."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from ferry.telemetry.parsing.rows import METRIC_PATTERN
from ferry.telemetry.storage.records import MAX_LIMIT

# RFC 3339 date-time (a subset of ISO 8601: date, time and an explicit offset are required).
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
DEFAULT_LIMIT = 1000


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorCode(StrEnum):
    INVALID_PARAMETER = "invalid_parameter"
    INVALID_CURSOR = "invalid_cursor"
    GPU_NOT_FOUND = "gpu_not_found"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNAVAILABLE = "unavailable"


class ErrorDetail(Model):
    code: ErrorCode
    message: str


class ErrorBody(Model):
    error: ErrorDetail


class Gpu(Model):
    uuid: str
    hostname: str
    model_name: str
    gpu_index: int
    device: str
    first_seen: datetime = Field(description="RFC 3339, UTC: the oldest stored sample")
    last_seen: datetime = Field(description="RFC 3339, UTC: the newest stored sample")


class GpuList(Model):
    gpus: list[Gpu]


class TelemetryParams(Model):
    """Query parameters of GET /api/v1/gpus/{uuid}/telemetry."""

    metric: Annotated[str, Field(pattern=METRIC_PATTERN, max_length=128)] | None = Field(
        None, description="only this DCGM field, e.g. DCGM_FI_DEV_GPU_UTIL"
    )
    start_time: AwareDatetime | None = Field(None, description="RFC 3339, inclusive")
    end_time: AwareDatetime | None = Field(None, description="RFC 3339, exclusive")
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = Field(
        DEFAULT_LIMIT, description="samples per page"
    )
    cursor: str | None = Field(None, description="next_cursor of the previous page")

    @field_validator("start_time", "end_time", mode="before")
    @classmethod
    def _rfc3339(cls, v: object) -> object:
        if isinstance(v, str) and not RFC3339.match(v):
            raise ValueError("expected an RFC 3339 time such as 2026-11-23T10:00:00Z")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> TelemetryParams:
        if self.start_time and self.end_time and self.start_time >= self.end_time:
            raise ValueError("start_time must be before end_time")
        return self


class TelemetryPoint(Model):
    timestamp: datetime = Field(description="RFC 3339, UTC")
    metric_name: str
    value: float
    hostname: str
    container: str | None
    pod: str | None
    namespace: str | None
    labels_raw: str


class TelemetryPage(Model):
    gpu_uuid: str
    items: list[TelemetryPoint] = Field(description="ordered by timestamp")
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null at the end"
    )


class Health(Model):
    status: str
    reason: str | None = None
