"""What `ferry` prints: tables, durations, progress lines, and lines <-> bodies."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.broker.cli import tables
from ferry.broker.cli.lines import body_of, line_of
from ferry.broker.cli.progress import render
from ferry.broker.models import (
    DeadLetter,
    DeadList,
    GroupSettings,
    GroupStats,
    QueueSettings,
    QueueStats,
)

pytestmark = pytest.mark.unit

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(json_values)
def test_a_printed_body_reads_back_as_the_same_body(body: object) -> None:
    line = line_of(body)
    assert "\n" not in line
    assert body_of(line) == body


def test_lines_are_json_when_they_parse_and_text_otherwise() -> None:
    assert body_of('{"gpu": 3}\n') == {"gpu": 3}
    assert body_of("42") == 42
    assert body_of("hello world\r\n") == "hello world"
    assert body_of("42", text=True) == "42"
    assert line_of("hello") == "hello"
    assert line_of("42") == '"42"'  # would read back as a number otherwise


def test_tables_align_columns_and_right_align_numbers() -> None:
    text = tables.table(["NAME", "COUNT"], [["a", 5], ["longer", 12345]])
    assert text.splitlines() == [
        "NAME     COUNT",
        "a            5",
        "longer  12,345",
    ]


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (250, "250ms"),
        (1234, "1.2s"),
        (192_000, "3m12s"),
        (7_380_000, "2h03m"),
        (3 * 86_400_000, "3d00h"),
    ],
)
def test_durations_read_like_a_person_would_write_them(ms: int, text: str) -> None:
    assert tables.duration(ms) == text


def _group(name: str, lag: int, dead: int) -> GroupStats:
    return GroupStats(
        queue="jobs",
        group=name,
        settings=GroupSettings(),
        depth=lag,
        in_flight=0,
        delayed=0,
        dead=dead,
        lag=lag,
        backlog=lag,
        oldest_ready_age_ms=1500,
        acked_total=7,
        consumers=[],
    )


def test_queue_list_sums_lag_and_dead_over_groups() -> None:
    q = QueueStats(
        queue="jobs",
        settings=QueueSettings(),
        messages=12,
        published_total=20,
        groups=[_group("a", 3, 1), _group("b", 4, 2)],
    )
    lines = tables.queues_table([q]).splitlines()
    assert lines[0].split() == ["QUEUE", "MESSAGES", "PUBLISHED", "GROUPS", "LAG", "DEAD"]
    assert lines[1].split() == ["jobs", "12", "20", "2", "7", "3"]
    assert tables.queues_table([]) == "no queues"
    report = tables.queue_report(q)
    assert "visibility timeout:  30.0s" in report
    assert "OLDEST" in report and "1.5s" in report


def test_dead_letters_show_reason_age_and_a_clipped_body_and_the_next_cursor() -> None:
    page = DeadList(
        messages=[
            DeadLetter(
                id="m1",
                body={"text": "x" * 200},
                key=None,
                headers={},
                delivery_count=5,
                dead_at_ms=1_000,
                reason="max deliveries",
            )
        ],
        next_cursor="c2",
    )
    text = tables.dead_table(page, now_ms=61_000)
    row = text.splitlines()[1]
    assert row.startswith("m1") and "1m00s ago" in row and "max deliveries" in row
    assert row.endswith("…") and len(row) < 160
    assert text.endswith("more: --cursor c2")


def test_progress_shows_a_bar_when_the_total_is_known_and_a_rate_always() -> None:
    assert render(5000, 2.0, 0.5) == f"[{'#' * 14}{'.' * 14}]  50%  5,000 msgs  2,500 msgs/s"
    assert render(5000, 2.0, None) == "5,000 msgs  2,500 msgs/s"
