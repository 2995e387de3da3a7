"""What the store holds and answers: samples with their ids, GPU summaries, queries."""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from ferry.telemetry.parsing.rows import TelemetryRow, to_micros

SAMPLE_COLUMNS = (
    "row_id",
    "message_id",
    "gpu_uuid",
    "metric_name",
    "ts_us",
    "value",
    "gpu_index",
    "device",
    "model_name",
    "hostname",
    "container",
    "pod",
    "namespace",
    "labels_raw",
    "stored_at_us",
)
MAX_LIMIT = 10_000


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sample(Frozen):
    """A row as stored: the validated row plus the ids that make writes idempotent."""

    row_id: str
    message_id: str
    row: TelemetryRow


class GpuSummary(Frozen):
    uuid: str
    hostname: str
    model_name: str
    gpu_index: int
    device: str
    first_seen: datetime
    last_seen: datetime


class Position(Frozen):
    """Keyset position in a GPU's samples: results continue strictly after it."""

    ts_us: int
    row_id: str


class SampleQuery(Frozen):
    gpu_uuid: str
    metric: str | None = None
    start: datetime | None = Field(None, description="inclusive")
    end: datetime | None = Field(None, description="exclusive")
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT + 1)] = 1000  # +1: "is there more?"
    after: Position | None = None

    @property
    def start_us(self) -> int | None:
        return None if self.start is None else to_micros(self.start)

    @property
    def end_us(self) -> int | None:
        return None if self.end is None else to_micros(self.end)


def schema_sql() -> str:
    return (resources.files("ferry.telemetry.storage") / "schema.sql").read_text()


def statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip() and not _only_comments(s)]


def _only_comments(s: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in s.splitlines())


def sample_tuple(s: Sample, stored_at_us: int) -> tuple[object, ...]:
    r = s.row
    return (
        s.row_id,
        s.message_id,
        r.uuid,
        r.metric_name,
        r.ts_us,
        r.value,
        r.gpu_id,
        r.device,
        r.model_name,
        r.hostname,
        r.container,
        r.pod,
        r.namespace,
        r.labels_raw,
        stored_at_us,
    )


def gpu_tuples(samples: list[Sample]) -> list[tuple[object, ...]]:
    """One (uuid, host, model, index, device, first, last) per GPU of a batch, sorted by uuid
    so concurrent writers lock GPU rows in the same order (no deadlocks)."""
    latest: dict[str, TelemetryRow] = {}
    first: dict[str, int] = {}
    for s in samples:
        r = s.row
        if r.uuid not in latest or r.ts_us >= latest[r.uuid].ts_us:
            latest[r.uuid] = r
        first[r.uuid] = min(first.get(r.uuid, r.ts_us), r.ts_us)
    return [
        (u, r.hostname, r.model_name, r.gpu_id, r.device, first[u], r.ts_us)
        for u, r in sorted(latest.items())
    ]
