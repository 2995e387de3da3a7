"""What the demo verifies: every valid row of the sample stored once, read back via the API."""

from __future__ import annotations

import csv
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ferry.telemetry.parsing.rows import (
    RowError,
    column_positions,
    parse_record,
    record_of,
    to_micros,
)
from ferrydemo.http import get_json

# A sample is identified by what it measured: GPU, metric and time.
Key = tuple[str, str, int]


@dataclass(frozen=True)
class Sample:
    rows: int
    rejected: int
    keys: frozenset[Key]


def read_sample(path: Path) -> Sample:
    """The keys of the sample's valid rows (the streamers reject the others)."""
    keys: set[Key] = set()
    rows = rejected = 0
    with path.open(newline="") as f:
        reader = csv.reader(f)
        positions = column_positions(next(reader))
        for fields in reader:
            rows += 1
            try:
                row = parse_record(record_of(fields, positions))
            except RowError:
                rejected += 1
                continue
            keys.add((row.uuid, row.metric_name, row.ts_us))
    return Sample(rows=rows, rejected=rejected, keys=frozenset(keys))


def stored_keys(api: str, page: int = 1000) -> Counter[Key]:
    """Every stored sample, paged through the public query API, counted per key."""
    found: Counter[Key] = Counter()
    for gpu in get_json(f"{api}/api/v1/gpus")["gpus"]:
        uuid = gpu["uuid"]
        cursor: str | None = None
        while True:
            query = {"limit": str(page), **({"cursor": cursor} if cursor else {})}
            url = f"{api}/api/v1/gpus/{urllib.parse.quote(uuid)}/telemetry?"
            body = get_json(url + urllib.parse.urlencode(query))
            for item in body["items"]:
                ts = _parse_time(item["timestamp"])
                found[(uuid, item["metric_name"], ts)] += 1
            cursor = body.get("next_cursor")
            if not cursor:
                break
    return found


def _parse_time(text: str) -> int:
    return to_micros(datetime.fromisoformat(text.replace("Z", "+00:00")))


@dataclass(frozen=True)
class Verdict:
    stored: int
    duplicates: int
    missing: int
    unexpected: int


def compare(expected: frozenset[Key], stored: Counter[Key]) -> Verdict:
    return Verdict(
        stored=sum(stored.values()),
        duplicates=sum(n - 1 for n in stored.values() if n > 1),
        missing=len(expected - stored.keys()),
        unexpected=len(stored.keys() - expected),
    )
