"""Broker message bodies: JSON, snake_case fields; one row per message, or many rows.

The schema header says which: `dcgm-row/v1` (or no header) is one row as a JSON object,
`dcgm-rows/v1` a JSON string holding an array of such objects, all of one GPU. Many rows
per message is what lets the pipeline run at the speed of its store: the broker's cost is
per message. The rows travel as text, not as a JSON array: the broker, and the clients
on both sides, then pass one string instead of walking every field of every row (their
CPU per row fell by about half; bench/README.md, "pipeline").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from pydantic import Field, TypeAdapter, ValidationError

from ferry.telemetry.parsing.rows import (
    Content,
    RowError,
    TelemetryRow,
    WireRow,
    content_of,
    describe,
    rfc3339,
)

# Header on every message the streamer publishes: lets operators tell telemetry from strays.
SCHEMA_HEADER = "ferry-telemetry-schema"
SCHEMA_VERSION = "dcgm-row/v1"
ROWS_VERSION = "dcgm-rows/v1"
MAX_ROWS_PER_MESSAGE = 1000  # bounds a message's size (~550 B a row) and a redelivery's cost


# What the collector validates: the same rules, no model per row (rows.WireRow).
_WIRE_ROWS: TypeAdapter[list[WireRow]] = TypeAdapter(
    Annotated[list[WireRow], Field(min_length=1, max_length=MAX_ROWS_PER_MESSAGE)]
)
_WIRE_ROW: TypeAdapter[WireRow] = TypeAdapter(WireRow)


def body_of(row: TelemetryRow) -> dict[str, Any]:
    return row.model_dump(mode="json")


def row_body(row: WireRow) -> dict[str, Any]:
    """A dcgm-row/v1 body: the row as a JSON object."""
    return {**row, "timestamp": rfc3339(row["timestamp"])}


def rows_body(rows: list[WireRow]) -> str:
    """A dcgm-rows/v1 body: the rows as the text of a JSON array of row objects."""
    return orjson.dumps(rows).decode()


def rows_of(body: Any) -> tuple[list[tuple[int, Content]], list[tuple[int, Any, str]]]:
    """A dcgm-rows/v1 body's valid rows (index, content) and poison rows (index, body,
    reason); RowError when the body as a whole is not such a message."""
    if isinstance(body, str):
        try:  # the common case, every row valid: one pass in pydantic's core
            return list(enumerate(map(content_of, _WIRE_ROWS.validate_json(body)))), []
        except ValidationError:
            pass  # find out which rows, below
    bodies = row_bodies(body)
    good, poison = [], []
    for i, item in enumerate(bodies):
        try:
            good.append((i, row_of(item)))
        except RowError as e:
            poison.append((i, item, e.reason))
    return good, poison


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
    return headers.get(SCHEMA_HEADER) == ROWS_VERSION


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
