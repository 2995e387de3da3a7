"""`make demo`'s options: --rate is bounded, and the passes they ask for (paced, unpaced);
what it prints of them."""

from __future__ import annotations

import io

import pytest

from ferrydemo.cli import MAX_RATE, UNPACED_ROWS, parser, problem
from ferrydemo.display import Console, Progress, Report, Summary
from ferrydemo.running import Pass, plan

pytestmark = pytest.mark.unit


def _problem(*argv: str) -> str | None:
    return problem(parser().parse_args(list(argv)))


@pytest.mark.parametrize("rate", ["0", "1", "200", str(MAX_RATE)])
def test_rate_within_bounds_is_accepted(rate: str) -> None:
    assert _problem("--rate", rate) is None


@pytest.mark.parametrize("rate", ["-1", str(MAX_RATE + 1)])
def test_rate_out_of_bounds_is_refused_with_the_bounds(rate: str) -> None:
    assert _problem("--rate", rate) == (
        "--rate must be between 0 (unpaced) and 1,000,000 rows/s per streamer")


def test_rate_that_is_not_a_whole_number_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["--rate", "fast"])
    assert exit_.value.code == 2


@pytest.mark.parametrize(("argv", "message"), [
    (["--rows", "0"], "--rows must be at least 1"),
    (["--unpaced-rows", "0"], "--unpaced-rows must be between 1 and 10,000,000"),
    (["--unpaced-rows", "10000001"], "--unpaced-rows must be between 1 and 10,000,000"),
])
def test_other_counts_are_bounded(argv: list[str], message: str) -> None:
    assert _problem(*argv) == message


def test_by_default_the_example_pace_then_a_generated_sample_unpaced() -> None:
    args = parser().parse_args([])
    passes = plan(rate=args.rate, failover=args.failover, unpaced_rows=args.unpaced_rows,
                  example_rate=100)
    assert passes == (Pass(100), Pass(0, UNPACED_ROWS))
    assert [p.label for p in passes] == ["paced", "unpaced"]


@pytest.mark.parametrize(("rate", "label"), [(0, "unpaced"), (250, "paced")])
def test_rate_asks_for_one_pass_over_the_example_sample(rate: int, label: str) -> None:
    passes = plan(rate=rate, failover=False, unpaced_rows=10, example_rate=100)
    assert passes == (Pass(rate),) and passes[0].label == label


def test_failover_keeps_to_the_paced_pass() -> None:
    assert plan(rate=None, failover=True, unpaced_rows=10, example_rate=100) == (Pass(100),)


def _summary(label: str, rate: int, stored: int, seconds: float, missing: int = 0) -> Summary:
    return Summary(label=label, rate_per_streamer=rate, rows_in_sample=stored,
                   rows_rejected=0, rows_stored=stored, duplicates=0, missing=missing,
                   unexpected=0, dead_letters=0, seconds=seconds, streamers=2,
                   collectors_peak=1, gpus=32)


def test_report_labels_each_pass_and_its_rate() -> None:
    report = Report((_summary("paced", 100, 2560, 12.8), _summary("unpaced", 0, 48000, 30.0)))
    lines = report.text().splitlines()
    assert lines[0].startswith("paced") and "200 rows/s" in lines[0]
    assert "ratePerSecond 100 rows/s per streamer" in lines[0]
    assert lines[1].startswith("unpaced") and "1,600 rows/s" in lines[1]
    assert "ratePerSecond 0: as fast as the pipeline goes" in lines[1]
    assert lines[2] == "every row stored exactly once: yes"
    body = report.as_dict()
    assert body["ok"] is True
    assert [p["label"] for p in body["passes"]] == ["paced", "unpaced"]


def test_report_fails_when_any_pass_lost_a_row() -> None:
    report = Report((_summary("paced", 100, 2560, 12.8),
                     _summary("unpaced", 0, 47999, 30.0, missing=1)))
    assert report.ok is False and report.as_dict()["ok"] is False
    assert report.text().endswith("every row stored exactly once: NO (see the summaries above)")


def test_a_pass_stored_in_one_commit_has_no_rate_rather_than_zero() -> None:
    single = _summary("unpaced", 0, 500, 0.0)
    assert "throughput              - rows/s (unpaced:" in single.text()


def _lines(console: Console, *elapsed: float, total: int = 3200) -> None:
    for e in elapsed:
        console.progress(Progress(int(e * 100), total, 0, 1, e))


def test_each_pass_shows_progress_from_its_start_in_a_pipe() -> None:
    """Not a terminal: a line every 2 s of the display's own time, the second pass's too
    (it was held back until its time passed the first pass's last line)."""
    out = io.StringIO()
    console = Console(out)
    console.start_progress()
    _lines(console, 0.5, 1.0, 2.6, 13.0, 14.0)
    assert len(out.getvalue().splitlines()) == 3  # at 0.5, 2.6 and 13.0 s
    console.start_progress()
    _lines(console, 0.4, 1.5, 2.5)
    second = out.getvalue().splitlines()[3:]
    assert [line.split("rows stored")[0].split()[-1] for line in second] == [
        "40/3200", "250/3200"]


def test_the_final_progress_line_and_the_summary_give_one_rate() -> None:
    """Both over the same window: from the streamers' start to the last row stored."""
    line = Progress(2560, 2560, 0, 1, 14.6).line()
    summary = _summary("paced", 100, 2560, 14.6)
    assert line.endswith(" 175 rows/s") and "throughput              175 rows/s" in summary.text()
    assert "14.6 s (from the streamers' start to the last row stored)" in summary.text()
