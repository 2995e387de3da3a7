"""Broker message bodies: one validated row per message, JSON, snake_case fields."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ferry.telemetry.parsing.rows import RowError, TelemetryRow, describe

# Header on every message the streamer publishes: lets operators tell telemetry from strays.
SCHEMA_HEADER = "ferry-telemetry-schema"
SCHEMA_VERSION = "dcgm-row/v1"


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
