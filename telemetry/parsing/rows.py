"""The DCGM exporter CSV row: columns, the validated model, and content-derived ids."""

from __future__ import annotations

import functools
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
    in one call over the joined bytes. A GPU's fields (index to namespace), a metric's
    name and a label set repeat from row to row: their encodings are kept, so a row
    encodes only its time and value (half the cost; bench/README.md, "pipeline")."""
    gpu = c[4:11]
    known = _GPUS.get(gpu)
    if known is None or known[0] != c.gpu_uuid:
        if len(_GPUS) >= _KEPT:
            _GPUS.clear()
        known = _GPUS[gpu] = (c.gpu_uuid, b"".join(map(_prefixed, (
            str(c.gpu_index), c.device, c.gpu_uuid, c.model_name, c.hostname,
            c.container or "", c.pod or "", c.namespace or ""))))
    data = b"".join((_prefixed(str(c.ts_us)), _cached(c.metric_name), known[1],
                     _prefixed(repr(c.value)), _cached(c.labels_raw)))
    return "dcgm-" + hashlib.sha256(data).hexdigest()[:40]


def _prefixed(field: str) -> bytes:
    data = field.encode()
    n = len(data)
    return (_LENGTHS[n] if n < len(_LENGTHS) else n.to_bytes(4, "big")) + data


def _cached(field: str) -> bytes:
    known = _FIELDS.get(field)
    if known is None:
        if len(_FIELDS) >= _KEPT:
            _FIELDS.clear()
        known = _FIELDS[field] = _prefixed(field)
    return known


_LENGTHS = [n.to_bytes(4, "big") for n in range(4097)]  # the prefixes, made once
_KEPT = 65536  # encodings kept, per kind: a fleet's GPUs, metrics, label sets
_FIELDS: dict[str, bytes] = {}
_GPUS: dict[tuple[object, ...], tuple[str, bytes]] = {}


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


# Any time an AwareDatetime can hold, as microseconds since the epoch (dcgm-rows/v2).
Micros = Annotated[int, Field(ge=to_micros(datetime.min.replace(tzinfo=UTC)),
                              le=to_micros(datetime.max.replace(tzinfo=UTC)))]


def from_micros(us: int) -> datetime:
    return EPOCH + us * MICROSECOND  # exact over the whole range of Micros


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
# per row. The timestamp is checked apart (micros_of): a file repeats each scrape's time
# on every row of it, and a repeated time is parsed once (bench/README.md, "pipeline").
_RECORDS: TypeAdapter[list[tuple[str, Metric, GpuIndex, NonEmpty, Uuid, NonEmpty,
                                 NonEmpty, str, str, str, Value, Labels]]] = TypeAdapter(
    list[tuple[str, Metric, GpuIndex, NonEmpty, Uuid, NonEmpty, NonEmpty, str, str,
               str, Value, Labels]],
    config=ConfigDict(str_strip_whitespace=True),  # parse_record strips every field too
)
_AWARE: TypeAdapter[AwareDatetime] = TypeAdapter(AwareDatetime)


@functools.lru_cache(maxsize=4096)
def micros_of(text: str) -> int:
    """A timestamp's text as microseconds since the epoch, by TelemetryRow's rule (an
    aware time); ValidationError when it is not one."""
    return to_micros(_AWARE.validate_python(text))


def valid_rows(
    records: Sequence[Sequence[str]], positions: Mapping[str, int]
) -> tuple[list[tuple[int, Content]], list[tuple[int, str]]]:
    """Validate a batch of CSV records: (index, content) of the valid ones and (index,
    reason) of the others. One pass for the whole batch when every record is valid;
    otherwise record by record (parse_record), which says what is wrong with each."""
    width = max(positions.values()) + 1
    pick = itemgetter(*(positions[c] for c in COLUMNS))
    if all(len(f) == width for f in records):
        try:
            rows = _RECORDS.validate_python(list(map(pick, records)))
            return [(i, Content(r[4], r[1], micros_of(r[0]), r[10], r[2], r[3], r[5], r[6],
                                r[7] or None, r[8] or None, r[9] or None, r[11]))
                    for i, r in enumerate(rows)], []
        except ValidationError:
            pass  # find out which, below
    good, bad = [], []
    for i, fields in enumerate(records):
        try:
            good.append((i, row_content(parse_record(record_of(fields, positions)))))
        except RowError as e:
            bad.append((i, e.reason))
    return good, bad


def describe(error: ValidationError, names: Sequence[str] = ()) -> str:
    """One line; `names` name a tuple's positions (the error says where by index)."""
    parts = []
    for item in error.errors(include_url=False):
        loc = [names[p] if isinstance(p, int) and p < len(names) else p for p in item["loc"]]
        where = ".".join(str(p) for p in loc) or "row"
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


def shifted(row: Content, by: timedelta) -> Content:
    """The same sample moved in time (loop mode replays a file as fresh data)."""
    return row if not by else row._replace(ts_us=row.ts_us + by // MICROSECOND)
