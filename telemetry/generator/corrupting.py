"""Deliberately broken CSV records, one per kind of mistake the streamer must catch."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ferry.telemetry.parsing.rows import COLUMNS

# kind -> how to break a good record (column -> replacement), or None for a short record.
BREAKAGES: dict[str, dict[str, str] | None] = {
    "timestamp-garbage": {"timestamp": "yesterday at noon"},
    "timestamp-without-zone": {"timestamp": "2026-11-23T10:00:00"},
    "value-not-a-number": {"value": "n/a"},
    "value-nan": {"value": "NaN"},
    "uuid-malformed": {"uuid": "GPU-1234"},
    "metric-not-dcgm": {"metric_name": "node_cpu_seconds_total"},
    "gpu-id-negative": {"gpu_id": "-1"},
    "hostname-empty": {"Hostname": ""},
    "too-few-fields": None,
}


def broken(good: Iterator[Mapping[str, str]]) -> Iterator[tuple[str, list[str]]]:
    """One broken record per breakage kind, each made from the next good record."""
    for kind, change in BREAKAGES.items():
        record = dict(next(good))
        if change is None:
            yield kind, [record[c] for c in COLUMNS][:7]
        else:
            record.update(change)
            yield kind, [record[c] for c in COLUMNS]
