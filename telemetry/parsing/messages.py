"""Broker message bodies: JSON; one row per message, or many rows.

The schema header says which: `dcgm-row/v1` (or no header) is one row as a JSON object
(snake_case fields), `dcgm-rows/v2` a JSON string holding an array of rows of one GPU,
each an array of the row's content in the store's column order (rows.Content: the time
as integer microseconds since the epoch, null for an absent container, pod or
namespace). `dcgm-rows/v1`, the same with each row as an object, is what earlier
streamers published; collectors still read it. Many rows per message is what lets the
pipeline run at the speed of its store: the broker's cost is per message. The rows
travel as text, not as a JSON array: the broker, and the clients on both sides, then
pass one string instead of walking every field of every row (their CPU per row fell by
about half); as arrays of content, a quarter fewer bytes, no names, no time to format or
parse (bench/README.md, "pipeline").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import orjson
from pydantic import Field, TypeAdapter, ValidationError

from ferry.telemetry.parsing.rows import (
    Content,
    GpuIndex,
    Labels,
    Metric,
    Micros,
    NonEmpty,
    RowError,
    TelemetryRow,
    Uuid,
    Value,
    WireRow,
    content_of,
    describe,
    from_micros,
    rfc3339,
)

# Header on every message the streamer publishes: lets operators tell telemetry from strays.
SCHEMA_HEADER = "ferry-telemetry-schema"
SCHEMA_VERSION = "dcgm-row/v1"
ROWS_VERSION = "dcgm-rows/v2"
ROWS_V1 = "dcgm-rows/v1"  # rows as objects: what streamers before v2 published
MAX_ROWS_PER_MESSAGE = 1000  # bounds a message's size (~550 B a row) and a redelivery's cost


# What the collector validates: the same rules, no model per row (rows.WireRow).
_WIRE_ROWS: TypeAdapter[list[WireRow]] = TypeAdapter(
    Annotated[list[WireRow], Field(min_length=1, max_length=MAX_ROWS_PER_MESSAGE)]
)
_WIRE_ROW: TypeAdapter[WireRow] = TypeAdapter(WireRow)
# dcgm-rows/v2: the same rules, on the content's columns; an absent field is null, not "".
Present = Annotated[str, Field(min_length=1)]
WireContent = tuple[Uuid, Metric, Micros, Value, GpuIndex, NonEmpty, NonEmpty, NonEmpty,
                    Present | None, Present | None, Present | None, Labels]
_CONTENTS: TypeAdapter[list[WireContent]] = TypeAdapter(
    Annotated[list[WireContent], Field(min_length=1, max_length=MAX_ROWS_PER_MESSAGE)]
)
_CONTENT: TypeAdapter[WireContent] = TypeAdapter(WireContent)


def body_of(row: TelemetryRow) -> dict[str, Any]:
    return row.model_dump(mode="json")


def row_body(row: Content) -> dict[str, Any]:
    """A dcgm-row/v1 body: the row as a JSON object."""
    return {"timestamp": rfc3339(from_micros(row.ts_us)), "metric_name": row.metric_name,
            "gpu_id": row.gpu_index, "device": row.device, "uuid": row.gpu_uuid,
            "model_name": row.model_name, "hostname": row.hostname,
            "container": row.container, "pod": row.pod, "namespace": row.namespace,
            "value": row.value, "labels_raw": row.labels_raw}


def rows_body(rows: Sequence[Content]) -> str:
    """A dcgm-rows/v2 body: the text of a JSON array of the rows' contents (as arrays)."""
    return orjson.dumps([tuple(r) for r in rows]).decode()  # orjson takes no NamedTuple


def rows_of(
    body: Any, version: str = ROWS_VERSION
) -> tuple[list[tuple[int, Content]], list[tuple[int, Any, str]]]:
    """A many-rows body's valid rows (index, content) and poison rows (index, body,
    reason); RowError when the body as a whole is not such a message."""
    v1 = version == ROWS_V1
    if isinstance(body, str):
        try:  # the common case, every row valid: one pass in pydantic's core
            if v1:
                return list(enumerate(map(content_of, _WIRE_ROWS.validate_json(body)))), []
            return list(enumerate(map(Content._make, _CONTENTS.validate_json(body)))), []
        except ValidationError:
            pass  # find out which rows, below
    bodies = row_bodies(body)
    good, poison = [], []
    for i, item in enumerate(bodies):
        try:
            good.append((i, row_of(item) if v1 else content_in(item)))
        except RowError as e:
            poison.append((i, item, e.reason))
    return good, poison


def content_in(item: Any) -> Content:
    """One row of a dcgm-rows/v2 body; RowError saying which column is wrong."""
    try:
        return Content._make(_CONTENT.validate_python(item))
    except ValidationError as e:
        raise RowError(describe(e, Content._fields)) from e


def row_of(body: Any) -> Content:
    """Parse a message body; RowError (a poison message) when it is not a telemetry row."""
    if not isinstance(body, dict):
        raise RowError(f"message body is {type(body).__name__}, expected a JSON object")
    try:
        return content_of(_WIRE_ROW.validate_python(body))
    except ValidationError as e:
        raise RowError(describe(e)) from e


def carries_rows(headers: Mapping[str, str]) -> bool:
    """True for a many-rows message (its body is a list of row bodies)."""
    return headers.get(SCHEMA_HEADER) in (ROWS_VERSION, ROWS_V1)


def row_bodies(body: Any) -> list[Any]:
    """The row bodies of a many-rows message; RowError when the body is not such a list."""
    try:
        items = orjson.loads(body) if isinstance(body, str) else None
    except orjson.JSONDecodeError:
        items = None
    if not isinstance(items, list) or not items:
        raise RowError(f"a {ROWS_VERSION} body must be the text of a non-empty JSON array")
    if len(items) > MAX_ROWS_PER_MESSAGE:
        raise RowError(f"a {ROWS_VERSION} body holds at most {MAX_ROWS_PER_MESSAGE} rows")
    return items


def rows_dedup_id(body: str) -> str:
    """A many-rows message's dedup id, derived from its body: the same rows grouped the
    same way (a streamer resuming from its checkpoint) are stored by the broker once.
    (Hashing the body, not the rows' ids, spares the streamer a row_id per row.)"""
    return f"dcgm-rows-{hashlib.sha256(body.encode()).hexdigest()[:40]}"


def part_id(message_id: str, index: int) -> str:
    """The message id a row of a many-rows message is stored under (unique per row, the
    same on every redelivery, so the store's message-id key still makes writes idempotent)."""
    return f"{message_id}:{index}"
