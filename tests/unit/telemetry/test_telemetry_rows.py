"""Parsing and validating DCGM CSV records; content-derived dedup ids."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ferry.telemetry.generator.corrupting import BREAKAGES
from ferry.telemetry.parsing.messages import body_of, row_of
from ferry.telemetry.parsing.rows import (
    COLUMNS,
    HeaderError,
    RowError,
    column_positions,
    content_id,
    from_micros,
    parse_record,
    record_of,
    rfc3339,
    row_content,
    row_id,
    shifted,
    to_csv_record,
)

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[3] / "examples" / "data"
GOOD = {
    "timestamp": "2026-11-23T10:00:00Z",
    "metric_name": "DCGM_FI_DEV_GPU_UTIL",
    "gpu_id": "3",
    "device": "nvidia3",
    "uuid": "GPU-5fd4f087-86f3-7a43-b711-4771313afc50",
    "modelName": "NVIDIA H100 80GB HBM3",
    "Hostname": "dgx-h100-01",
    "container": "",
    "pod": "",
    "namespace": "",
    "value": "87",
    "labels_raw": 'gpu="3"',
}


def test_a_good_record_becomes_a_typed_row() -> None:
    row = parse_record(GOOD)
    assert row.timestamp == datetime(2026, 11, 23, 10, tzinfo=UTC)
    assert (row.gpu_id, row.value, row.hostname) == (3, 87.0, "dgx-h100-01")
    assert row.model_name == "NVIDIA H100 80GB HBM3"
    assert row.container is None and row.pod is None
    assert to_csv_record(row) == GOOD


def test_offsets_are_normalised_to_utc() -> None:
    row = parse_record({**GOOD, "timestamp": "2026-11-23T12:00:00.250+02:00"})
    assert rfc3339(row.timestamp) == "2026-11-23T10:00:00.250000Z"


@pytest.mark.parametrize(
    ("column", "text", "complaint"),
    [
        ("timestamp", "yesterday", "timestamp"),
        ("timestamp", "2026-11-23T10:00:00", "timezone"),
        ("value", "n/a", "value"),
        ("value", "NaN", "finite"),
        ("value", "inf", "finite"),
        ("uuid", "GPU-1234", "uuid"),
        ("metric_name", "node_cpu_seconds_total", "metric_name"),
        ("gpu_id", "-1", "gpu_id"),
        ("Hostname", "", "Hostname"),
    ],
)
def test_bad_fields_are_rejected_with_the_field_named(
    column: str, text: str, complaint: str
) -> None:
    with pytest.raises(RowError) as e:
        parse_record({**GOOD, column: text})
    assert complaint in str(e.value)


def test_header_may_reorder_columns_but_not_lack_them() -> None:
    header = list(reversed(COLUMNS))
    pos = column_positions(header)
    fields = [GOOD[c] for c in header]
    assert parse_record(record_of(fields, pos)) == parse_record(GOOD)
    with pytest.raises(HeaderError, match="uuid"):
        column_positions([c for c in COLUMNS if c != "uuid"])


def test_a_record_with_the_wrong_number_of_fields_is_rejected() -> None:
    pos = column_positions(COLUMNS)
    with pytest.raises(RowError, match="expected 12 fields, got 7"):
        record_of([GOOD[c] for c in COLUMNS][:7], pos)


def test_row_id_is_stable_and_changes_with_any_field() -> None:
    row = parse_record(GOOD)
    assert row_id(row) == row_id(parse_record(dict(GOOD)))
    # The same instant written differently is the same sample.
    assert row_id(row) == row_id(parse_record({**GOOD, "timestamp": "2026-11-23T11:00:00+01:00"}))
    ids = {
        row_id(parse_record({**GOOD, c: v}))
        for c, v in [
            ("value", "88"),
            ("gpu_id", "4"),
            ("metric_name", "DCGM_FI_DEV_GPU_TEMP"),
            ("timestamp", "2026-11-23T10:00:01Z"),
            ("pod", "p"),
            ("labels_raw", ""),
        ]
    }
    assert len(ids) == 6 and row_id(row) not in ids
    # Length prefixes: moving a character from one field to the next changes the id.
    a = parse_record({**GOOD, "container": "ab", "pod": "c"})
    b = parse_record({**GOOD, "container": "a", "pod": "bc"})
    assert row_id(a) != row_id(b)


def test_loop_shift_gives_new_ids_and_zero_shift_keeps_them() -> None:
    row = row_content(parse_record(GOOD))
    assert shifted(row, timedelta(0)) is row
    moved = shifted(row, timedelta(minutes=4))
    assert moved._replace(ts_us=row.ts_us) == row
    assert from_micros(moved.ts_us) - from_micros(row.ts_us) == timedelta(minutes=4)
    assert content_id(moved) != content_id(row)


def test_message_body_round_trips_and_strays_are_poison() -> None:
    row = parse_record(GOOD)
    assert row_of(body_of(row)) == row_content(row)
    with pytest.raises(RowError, match="expected a JSON object"):
        row_of("hello")
    with pytest.raises(RowError, match="value"):
        row_of({**body_of(row), "value": "hot"})
    with pytest.raises(RowError, match="Extra inputs"):
        row_of({**body_of(row), "surprise": 1})


def _read(path: Path) -> tuple[int, list[str]]:
    with path.open(newline="") as f:
        reader = csv.reader(f)
        pos = column_positions(next(reader))
        good, bad = 0, []
        for fields in reader:
            try:
                parse_record(record_of(fields, pos))
                good += 1
            except RowError as e:
                bad.append(str(e))
    return good, bad


def test_committed_samples_parse_as_documented() -> None:
    good, bad = _read(DATA / "dcgm_sample.csv")
    assert (good, bad) == (2560, [])
    good, bad = _read(DATA / "dcgm_bad_rows.csv")
    assert good == 320
    assert len(bad) == len(BREAKAGES)


def test_a_rows_id_is_the_one_earlier_versions_gave() -> None:
    # Ids computed by the collector before the one-pass validation (c0eb69a^): rows stored
    # then must keep their key, or a message redelivered across an upgrade is stored twice.
    assert row_id(parse_record(dict(GOOD))) == "dcgm-49d9886d217dfe4c19fd4770b13d217c06faa353"
    odd = {**GOOD, "container": "", "pod": "p", "value": "0.1"}
    assert row_id(parse_record(odd)) == "dcgm-5dff4ecd2b3ee592d0eddc77d2d8d0c04cc1e527"
