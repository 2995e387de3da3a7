"""Broker message bodies: JSON, snake_case fields; one row per message, or many rows.

The schema header says which: `dcgm-row/v1` (or no header) is one row as a JSON object,
`dcgm-rows/v1` a JSON array of such objects, all of one GPU. Many rows per message is
what lets the pipeline run at the speed of its store: the broker's cost is per message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ferry.telemetry.parsing.rows import RowError, TelemetryRow, describe

# Header on every message the streamer publishes: lets operators tell telemetry from strays.
SCHEMA_HEADER = "ferry-telemetry-schema"
SCHEMA_VERSION = "dcgm-row/v1"
ROWS_VERSION = "dcgm-rows/v1"
MAX_ROWS_PER_MESSAGE = 1000  # bounds a message's size (~550 B a row) and a redelivery's cost


def body_of(row: TelemetryRow) -> dict[str, Any]:
    return row.model_dump(mode="json")


def row_of(body: Any) -> TelemetryRow:
    """Parse a message body; RowError (a poison message) when it is not a telemetry row."""
    if not isinstance(body, dict):
        raise RowError(f"message body is {type(body).__name__}, expected a JSON object")
    try:
        return TelemetryRow.model_validate(body)
    except ValidationError as e:
        raise RowError(describe(e)) from e


def carries_rows(headers: Mapping[str, str]) -> bool:
    """True for a many-rows message (its body is a list of row bodies)."""
    return headers.get(SCHEMA_HEADER) == ROWS_VERSION


def row_bodies(body: Any) -> list[Any]:
    """The row bodies of a many-rows message; RowError when the body is not such a list."""
    if not isinstance(body, list) or not body:
        raise RowError(f"a {ROWS_VERSION} body must be a non-empty JSON array of rows")
    if len(body) > MAX_ROWS_PER_MESSAGE:
        raise RowError(f"a {ROWS_VERSION} body holds at most {MAX_ROWS_PER_MESSAGE} rows")
    return body


def rows_dedup_id(row_ids: list[str]) -> str:
    """A many-rows message's dedup id, derived from its rows' ids: the same rows grouped
    the same way (a streamer resuming from its checkpoint) are stored by the broker once."""
    h = hashlib.sha256("\n".join(row_ids).encode()).hexdigest()
    return f"dcgm-rows-{h[:40]}"


def part_id(message_id: str, index: int) -> str:
    """The message id a row of a many-rows message is stored under (unique per row, the
    same on every redelivery, so the store's message-id key still makes writes idempotent)."""
    return f"{message_id}:{index}"
