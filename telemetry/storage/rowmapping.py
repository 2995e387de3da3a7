"""Database rows back into models (the same for both engines)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ferry.telemetry.parsing.rows import TelemetryRow, from_micros
from ferry.telemetry.storage.queries import GPU_COLUMNS
from ferry.telemetry.storage.records import SAMPLE_COLUMNS, GpuSummary, Sample


def sample_of(r: Iterable[Any]) -> Sample:
    c = dict(zip(SAMPLE_COLUMNS, r, strict=True))
    row = TelemetryRow(
        timestamp=from_micros(c["ts_us"]),
        metric_name=c["metric_name"],
        gpu_id=c["gpu_index"],
        device=c["device"],
        uuid=c["gpu_uuid"],
        model_name=c["model_name"],
        hostname=c["hostname"],
        container=c["container"],
        pod=c["pod"],
        namespace=c["namespace"],
        value=c["value"],
        labels_raw=c["labels_raw"],
    )
    return Sample(row_id=c["row_id"], message_id=c["message_id"], row=row)


def gpu_of(r: Iterable[Any]) -> GpuSummary:
    c = dict(zip(GPU_COLUMNS.split(", "), r, strict=True))
    return GpuSummary(
        uuid=c["uuid"],
        hostname=c["hostname"],
        model_name=c["model_name"],
        gpu_index=c["gpu_index"],
        device=c["device"],
        first_seen=from_micros(c["first_seen_us"]),
        last_seen=from_micros(c["last_seen_us"]),
    )
