"""Streamer building blocks without a broker: input discovery, checkpoints, loop spans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from ferry.telemetry.parsing.messages import (
    ROWS_V1,
    ROWS_VERSION,
    body_of,
    carries_rows,
    row_of,
    rows_body,
    rows_of,
)
from ferry.telemetry.parsing.replaying import loop_span
from ferry.telemetry.parsing.rows import (
    COLUMNS,
    Content,
    RowError,
    content_id,
    parse_record,
    record_of,
    row_content,
    valid_rows,
)
from ferry.telemetry.streamer import checkpoints
from ferry.telemetry.streamer.checkpoints import Checkpoint, CheckpointError
from ferry.telemetry.streamer.reading import CsvFile, InputError, input_files
from ferry.telemetry.streamer.streaming import messages_of
from ferry.telemetry.streamer.uploading import UploadError, read_upload

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)
DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


def test_a_directory_means_its_csv_files_in_name_order(tmp_path: Path) -> None:
    for name in ("b.csv", "a.csv", "notes.txt"):
        (tmp_path / name).write_text(",".join(COLUMNS) + "\n")
    assert [p.name for p in input_files(tmp_path)] == ["a.csv", "b.csv"]
    assert input_files(tmp_path / "a.csv") == [tmp_path / "a.csv"]


@pytest.mark.parametrize(
    ("content", "complaint"),
    [(None, "no such file"), ("", "empty file"), ("a,b,c\n1,2,3\n", "lacks column")],
)
def test_unreadable_inputs_fail_before_anything_is_published(
    tmp_path: Path, content: str | None, complaint: str
) -> None:
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=complaint):
        CsvFile(input_files(path)[0]) if content is not None else input_files(path)


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no \*\.csv"):
        input_files(tmp_path)


def test_records_are_numbered_from_one_after_the_header(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(",".join(COLUMNS) + "\nx\n\ny,z\n")
    assert [(r.number, r.fields) for r in CsvFile(path).records()] == [(1, ["x"]), (3, ["y", "z"])]


def test_checkpoint_round_trip_and_a_different_split_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ck.json"
    assert checkpoints.load(path, 1, 2) == Checkpoint(instance_index=1, instance_count=2)
    ck = Checkpoint(instance_index=1, instance_count=2, loop=3, done={"a.csv": 40}, published=17)
    checkpoints.save(path, ck)
    assert checkpoints.load(path, 1, 2) == ck
    assert not (tmp_path / "ck.json.tmp").exists()
    with pytest.raises(CheckpointError, match="instance 1 of 2, not 0 of 3"):
        checkpoints.load(path, 0, 3)
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not a streamer checkpoint"):
        checkpoints.load(path, 1, 2)


def test_loop_span_is_the_duration_plus_one_interval() -> None:
    ts = [T0 + timedelta(seconds=30 * i) for i in range(8)]
    assert loop_span(ts + ts) == timedelta(seconds=240)
    assert loop_span([T0]) == timedelta(seconds=1)
    assert loop_span([]) == timedelta(seconds=1)


def test_an_upload_is_validated_like_a_file() -> None:
    text = (DATA / "dcgm_bad_rows.csv").read_text()
    rows, bad = read_upload(text)
    assert (len(rows), len(bad)) == (320, 9)
    assert bad[0].file == "upload" and "timestamp" in bad[0].reason
    with pytest.raises(UploadError, match="empty upload"):
        read_upload("")
    with pytest.raises(UploadError, match="lacks column"):
        read_upload("a,b\n1,2\n")


def test_many_rows_messages_hold_one_gpus_rows_in_order_with_stable_dedup_ids() -> None:
    f = CsvFile(DATA / "dcgm_sample.csv")
    rows = [(row_content(parse_record(record_of(r.fields, f.positions))), f"s:{r.number}")
            for r in f.records()][:700]
    messages = messages_of(rows, 30)
    parts = [rows_of(m.body) for m in messages]
    assert all(poison == [] for _, poison in parts)
    assert sum(len(good) for good, _ in parts) == 700
    for m, (good, _) in zip(messages, parts, strict=True):
        assert 1 <= len(good) <= 30
        assert {c.gpu_uuid for _, c in good} == {m.key}
        assert carries_rows(m.headers)
    first = rows[0][0].gpu_uuid
    assert [r for m, (good, _) in zip(messages, parts, strict=True) if m.key == first
            for _, r in good] == [r for r, _ in rows if r.gpu_uuid == first]  # order
    assert [m.dedup_id for m in messages_of(rows, 30)] == [m.dedup_id for m in messages]
    assert len({m.dedup_id for m in messages}) == len(messages)
    single = messages_of(rows[:3], 1)
    assert [m.dedup_id for m in single] == [content_id(r) for r, _ in rows[:3]]
    assert [row_of(m.body) for m in single] == [r for r, _ in rows[:3]]
    assert not any(carries_rows(m.headers) for m in single)


def test_a_many_rows_body_names_its_poison_rows_or_is_poison_as_a_whole() -> None:
    f = CsvFile(DATA / "dcgm_sample.csv")
    row = parse_record(record_of(next(iter(f.records())).fields, f.positions))
    bad = {**body_of(row), "value": "hot"}
    good, poison = rows_of(orjson.dumps([body_of(row), bad, 7]).decode(), ROWS_V1)
    assert [i for i, _ in good] == [0] and good[0][1] == row_content(row)
    assert [(i, b) for i, b, _ in poison] == [(1, bad), (2, 7)]
    assert "value" in poison[0][2] and "expected a JSON object" in poison[1][2]
    for whole in ("[]", "not json", [body_of(row)], "{}", "[" + "1," * 1000 + "1]"):
        for version in (ROWS_V1, ROWS_VERSION):
            with pytest.raises(RowError):
                rows_of(whole, version)


def test_a_v2_body_is_checked_by_the_same_rules_and_names_its_poison_rows() -> None:
    """dcgm-rows/v2 carries each row as its content (an array): every rule still runs in
    the collector, and a bad row is named by its column, apart from its neighbours."""
    f = CsvFile(DATA / "dcgm_sample.csv")
    rows = [row_content(parse_record(record_of(r.fields, f.positions)))
            for r in f.records()][:3]
    assert rows_of(rows_body(rows)) == (list(enumerate(rows)), [])
    first = list(rows[0])
    breakages = {3: "hot", 2: 2**63, 0: "GPU-nope", 8: "", 1: "NOT_DCGM", 4: -1}
    for column, value in breakages.items():
        bad = [*first[:column], value, *first[column + 1:]]
        good, poison = rows_of(orjson.dumps([tuple(rows[1]), bad, 7]).decode())
        assert good == [(0, rows[1])]
        assert [(i, b) for i, b, _ in poison] == [(1, bad), (2, 7)]
        assert poison[0][2].startswith(Content._fields[column])
    short = orjson.dumps([first[:11]]).decode()
    assert rows_of(short)[1][0][2] == "labels_raw: Field required"


def test_a_batch_of_records_is_validated_like_each_record_alone() -> None:
    """valid_rows checks a batch in one pass; it must accept and reject exactly what
    parse_record does, row by row, with the same reasons."""
    sample, broken = CsvFile(DATA / "dcgm_sample.csv"), CsvFile(DATA / "dcgm_bad_rows.csv")
    clean = [r.fields for r in sample.records()]  # all valid: the one-pass path
    padded = [*clean, [f"  {v} " for v in clean[0]]]  # stripped, as one by one
    bad_rows = [r.fields for r in broken.records()]
    for f, records in ((sample, clean), (sample, padded), (broken, bad_rows)):
        good, bad = valid_rows(records, f.positions)
        alone: dict[int, object] = {}
        for i, fields in enumerate(records):
            try:
                alone[i] = row_content(parse_record(record_of(fields, f.positions)))
            except RowError as e:
                alone[i] = e.reason
        assert dict(good) | dict(bad) == alone
    assert len(bad) == 9
