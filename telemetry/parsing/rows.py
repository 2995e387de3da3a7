"""The DCGM exporter CSV row: columns, the validated model, and content-derived ids."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Annotated, NamedTuple, NotRequired, cast

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    with_config,
)
from typing_extensions import TypedDict

COLUMNS: tuple[str, ...] = (
    "timestamp",
    "metric_name",
    "gpu_id",
    "device",
    "uuid",
    "modelName",
    "Hostname",
    "container",
    "pod",
    "namespace",
    "value",
    "labels_raw",
)

METRIC_PATTERN = r"^DCGM_(FI|EXP)_[A-Z0-9_]+$"
# GPU-<uuid> for whole GPUs, MIG-<uuid> for MIG instances.
UUID_PATTERN = r"^(GPU|MIG)-[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$"

NonEmpty = Annotated[str, Field(min_length=1, max_length=256)]
# Each field's rule, once: the CSV row model and the message row below both use these.
Metric = Annotated[str, Field(pattern=METRIC_PATTERN, max_length=128)]
GpuIndex = Annotated[int, Field(ge=0, le=1023)]
Uuid = Annotated[str, Field(pattern=UUID_PATTERN)]
Value = Annotated[float, Field(allow_inf_nan=False)]
Labels = Annotated[str, Field(max_length=4096)]


class TelemetryRow(BaseModel):
    """One validated sample. Field names are snake_case; CSV names are the aliases."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    timestamp: AwareDatetime
    metric_name: Metric
    gpu_id: GpuIndex
    device: NonEmpty
    uuid: Uuid
    model_name: NonEmpty = Field(alias="modelName")
    hostname: NonEmpty = Field(alias="Hostname")
    container: str | None = None
    pod: str | None = None
    namespace: str | None = None
    value: Value
    labels_raw: Labels = ""

    @field_validator("container", "pod", "namespace", mode="before")
    @classmethod
    def _empty_is_none(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("timestamp")
    @classmethod
    def _to_utc(cls, v: datetime) -> datetime:
        return v.astimezone(UTC)

    @property
    def ts_us(self) -> int:
        return to_micros(self.timestamp)


@with_config(ConfigDict(extra="forbid"))
class WireRow(TypedDict):
    """A row as a message carries it (TelemetryRow dumped: snake_case names, "" as null).

    The collector validates these, not TelemetryRow models: the same rules on every
    field, checked in pydantic's core without a Python call or a model per row (half
    the cost; bench/README.md, "pipeline")."""

    timestamp: AwareDatetime
    metric_name: Metric
    gpu_id: GpuIndex
    device: NonEmpty
    uuid: Uuid
    model_name: NonEmpty
    hostname: NonEmpty
    container: NotRequired[str | None]
    pod: NotRequired[str | None]
    namespace: NotRequired[str | None]
    value: Value
    labels_raw: NotRequired[Labels]


class Content(NamedTuple):
    """A row's content in the store's column order (after row_id and message_id): what a
    write COPYs, and what the row's content id is a hash of."""

    gpu_uuid: str
    metric_name: str
    ts_us: int
    value: float
    gpu_index: int
    device: str
    model_name: str
    hostname: str
    container: str | None
    pod: str | None
    namespace: str | None
    labels_raw: str


def content_of(r: WireRow) -> Content:
    return Content(
        r["uuid"],
        r["metric_name"],
        to_micros(r["timestamp"]),
        r["value"],
        r["gpu_id"],
        r["device"],
        r["model_name"],
        r["hostname"],
        r.get("container") or None,
        r.get("pod") or None,
        r.get("namespace") or None,
        r.get("labels_raw", ""),
    )


def row_content(row: TelemetryRow) -> Content:
    return content_of(row_dict(row))


def row_dict(row: TelemetryRow) -> WireRow:
    # The model's fields are WireRow's keys, checked by the same rules.
    return cast(WireRow, row.model_dump())


def content_id(c: Content) -> str:
    """Deterministic id derived from a row's content: the store's key, so two reads of
    the same row (a restart, a replay, another streamer) are stored once.

    The fields, each length-prefixed (no two different rows give the same bytes), in the
    order every earlier version hashed them: the same row keeps the same id across an
    upgrade, so a message redelivered to a newer collector is not stored twice. Hashed
    in one call over the joined bytes, not field by field."""
    out: list[bytes] = []
    for field in (str(c.ts_us), c.metric_name, str(c.gpu_index), c.device, c.gpu_uuid,
                  c.model_name, c.hostname, c.container or "", c.pod or "",
                  c.namespace or "", repr(c.value), c.labels_raw):
        data = field.encode()
        n = len(data)
        out += (_LENGTHS[n] if n < len(_LENGTHS) else n.to_bytes(4, "big"), data)
    return "dcgm-" + hashlib.sha256(b"".join(out)).hexdigest()[:40]


_LENGTHS = [n.to_bytes(4, "big") for n in range(4097)]  # the prefixes, made once


class RowError(ValueError):
    """A CSV row that cannot become a TelemetryRow; `reason` is readable, one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class HeaderError(ValueError):
    """The file's header does not name the DCGM columns: no row of it can be read."""


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def to_micros(ts: datetime) -> int:
    # Exact integer division of timedeltas, a third of the cost of composing days, seconds
    # and microseconds by hand (row ids and every write call it several times per row).
    return (ts - EPOCH) // MICROSECOND


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def rfc3339(ts: datetime) -> str:
    """UTC with a `Z`, microseconds only when present (what DCGM exports look like)."""
    ts = ts.astimezone(UTC)
    spec = "microseconds" if ts.microsecond else "seconds"
    return ts.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def column_positions(header: Sequence[str]) -> dict[str, int]:
    """Where each DCGM column is in this file; order may differ, names may not."""
    names = [h.strip() for h in header]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise HeaderError(
            f"CSV header lacks column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}"
        )
    return {c: names.index(c) for c in COLUMNS}


def record_of(fields: Sequence[str], positions: Mapping[str, int]) -> dict[str, str]:
    """Map a CSV record onto column names, rejecting a wrong number of fields."""
    width = max(positions.values()) + 1
    if len(fields) != width:
        raise RowError(f"expected {width} fields, got {len(fields)}")
    return {name: fields[i] for name, i in positions.items()}


def parse_record(record: Mapping[str, str]) -> TelemetryRow:
    """Validate one CSV record (column name -> text); RowError says what is wrong."""
    try:
        return TelemetryRow.model_validate({k: v.strip() for k, v in record.items()})
    except ValidationError as e:
        raise RowError(describe(e)) from e


# A CSV record's fields in COLUMNS order, with TelemetryRow's rules: a batch of records is
# validated in one call in pydantic's core, without a dict, a model or a Python validator
# per row (the streamer's cost per row fell by ...; bench/README.md, "pipeline").
_RECORDS: TypeAdapter[list[tuple[AwareDatetime, Metric, GpuIndex, NonEmpty, Uuid, NonEmpty,
                                 NonEmpty, str, str, str, Value, Labels]]] = TypeAdapter(
    list[tuple[AwareDatetime, Metric, GpuIndex, NonEmpty, Uuid, NonEmpty, NonEmpty, str, str,
               str, Value, Labels]],
    config=ConfigDict(str_strip_whitespace=True),  # parse_record strips every field too
)
WIRE_KEYS = tuple(WireRow.__annotations__)  # COLUMNS order, snake_case


def valid_rows(
    records: Sequence[Sequence[str]], positions: Mapping[str, int]
) -> tuple[list[tuple[int, WireRow]], list[tuple[int, str]]]:
    """Validate a batch of CSV records: (index, row) of the valid ones and (index, reason)
    of the others. One pass for the whole batch when every record is valid; otherwise
    record by record (parse_record), which says what is wrong with each."""
    width = max(positions.values()) + 1
    pick = itemgetter(*(positions[c] for c in COLUMNS))
    if all(len(f) == width for f in records):
        try:
            rows = _RECORDS.validate_python([pick(f) for f in records])
        except ValidationError:
            pass  # find out which, below
        else:
            return [(i, cast(WireRow, dict(zip(WIRE_KEYS, r, strict=True))))
                    for i, r in enumerate(rows)], []
    good, bad = [], []
    for i, fields in enumerate(records):
        try:
            good.append((i, row_dict(parse_record(record_of(fields, positions)))))
        except RowError as e:
            bad.append((i, e.reason))
    return good, bad


def describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "row"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def row_id(row: TelemetryRow) -> str:
    """The row's content id (the store's key) of a TelemetryRow model."""
    return content_id(row_content(row))


def to_csv_record(row: TelemetryRow) -> dict[str, str]:
    """The inverse of parse_record (used by the generator and by tests)."""
    value = int(row.value) if row.value.is_integer() else row.value
    return {
        "timestamp": rfc3339(row.timestamp),
        "metric_name": row.metric_name,
        "gpu_id": str(row.gpu_id),
        "device": row.device,
        "uuid": row.uuid,
        "modelName": row.model_name,
        "Hostname": row.hostname,
        "container": row.container or "",
        "pod": row.pod or "",
        "namespace": row.namespace or "",
        "value": str(value),
        "labels_raw": row.labels_raw,
    }


def shifted(row: WireRow, by: timedelta) -> WireRow:
    """The same sample moved in time (loop mode replays a file as fresh data)."""
    return row if not by else {**row, "timestamp": row["timestamp"] + by}
