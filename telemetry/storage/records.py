"""What the store holds and answers: samples with their ids, GPU summaries, queries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from typing import Annotated, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from ferry.telemetry.parsing.rows import Content, TelemetryRow, row_content, to_micros

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


class NewSample(NamedTuple):
    """A row on its way into the store: the ids that make the write idempotent, and its
    content as the columns COPY takes (a tuple, no model per row: bench/README.md)."""

    row_id: str
    message_id: str
    content: Content


def new_sample(s: Sample) -> NewSample:
    return NewSample(s.row_id, s.message_id, row_content(s.row))


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


def sample_tuples(samples: Sequence[NewSample], stored_at_us: int) -> list[tuple[object, ...]]:
    """The rows in SAMPLE_COLUMNS order, sorted by row_id so concurrent writers take the
    key's locks in the same order."""
    return [(s.row_id, s.message_id, *s.content, stored_at_us)
            for s in sorted(samples, key=lambda s: s.row_id)]


def gpu_tuples(samples: Sequence[NewSample]) -> list[tuple[object, ...]]:
    """One (uuid, host, model, index, device, first, last) per GPU of a batch, sorted by uuid
    so concurrent writers lock GPU rows in the same order (no deadlocks)."""
    latest: dict[str, Content] = {}
    first: dict[str, int] = {}
    for s in samples:
        c = s.content
        seen = latest.get(c.gpu_uuid)
        if seen is None:
            latest[c.gpu_uuid], first[c.gpu_uuid] = c, c.ts_us
            continue
        if c.ts_us >= seen.ts_us:
            latest[c.gpu_uuid] = c
        elif c.ts_us < first[c.gpu_uuid]:
            first[c.gpu_uuid] = c.ts_us
    return [
        (u, c.hostname, c.model_name, c.gpu_index, c.device, first[u], c.ts_us)
        for u, c in sorted(latest.items())
    ]
