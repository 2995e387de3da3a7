"""The benchmark's arithmetic: medians over good runs only, no ratio resting on lost messages."""

import pytest

from bench.profiling import summarize
from bench.reporting import medians, ratio_lines, ratios
from bench.results import Counts, Result
from bench.scenarios import percentile
from bench.settings import BenchConfig, Scenario

pytestmark = pytest.mark.unit


def e2e(system: str, run: int, rate: float, *, delivered: int = 100) -> Result:
    return Result(
        system=system, durability="d", scenario=Scenario.E2E, body_size=256, run=run,
        messages=100, msgs_per_s=rate, counts=Counts(expected=100, delivered=delivered),
    )


def test_median_over_runs_and_ratio() -> None:
    results = [e2e("ferry", r, v) for r, v in ((1, 900.0), (2, 1000.0), (3, 5000.0))]
    results += [e2e("nats", r, v) for r, v in ((1, 400.0), (2, 500.0), (3, 600.0))]
    assert medians(results)["ferry/e2e/256"]["msgs_per_s"] == 1000.0
    assert ratios(results, ["ferry", "nats"]) == {"nats": 2.0}
    cfg = BenchConfig(systems=("ferry", "nats"))
    assert ratio_lines(results, cfg) == "ratio ferry/nats e2e_msgs_per_s: 2.00"


def test_no_ratio_when_a_peer_lost_messages() -> None:
    results = [e2e("ferry", 1, 1000.0), e2e("redis-everysec", 1, 10.0, delivered=99)]
    row = medians(results)["redis-everysec/e2e/256"]
    assert row["runs_ok"] == 0
    assert row["msgs_per_s"] is None
    assert ratios(results, ["ferry", "redis-everysec"]) == {"redis-everysec": None}
    assert "n/a" in ratio_lines(results, BenchConfig(systems=("ferry", "redis-everysec")))


def test_no_ratio_when_ferry_kept_messages_unacked() -> None:
    bad = e2e("ferry", 1, 1000.0)
    assert bad.counts is not None
    bad.counts.unacked_after = 3
    results = [bad, e2e("nats", 1, 500.0)]
    assert ratios(results, ["ferry", "nats"]) == {"nats": None}


def test_profiled_pass_stays_out_of_the_medians() -> None:
    results = [e2e("ferry", 0, 1.0), e2e("ferry", 1, 1000.0)]
    assert medians(results)["ferry/e2e/256"]["runs"] == 1
    assert medians(results)["ferry/e2e/256"]["msgs_per_s"] == 1000.0


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0


def test_profile_summary_charges_time_to_areas_and_threads() -> None:
    raw = "\n".join([
        "thread (1): MainThread;main (x.py:1);publish (broker/transport/messaging.py:5);"
        "model_validate_json (pydantic/main.py:9) 30",
        "thread (1): MainThread;main (x.py:1);publish (broker/transport/messaging.py:5) 10",
        "thread (2): ferry-store-writer;run (threading.py:1);_commit (broker/store/writer.py:3) 60",
    ])
    text = summarize(raw, seconds=1.0)
    assert "30.0%  pydantic" in text
    assert "60.0%  ferry store (SQLite, fsync)" in text
    # by Ferry layer, pydantic's time is the transport's (its caller)
    assert "40.0%  ferry transport" in text
    assert "24.0%  thread (2): ferry-store-writer" in text  # 60 samples of 250 in 1 s


def pipeline_run(run: int, rows_per_s: float, copy: float, *, stored: int = 1600) -> Result:
    return Result(
        system="ferry", durability="d", scenario=Scenario.PIPELINE, body_size=100, run=run,
        messages=1600, rows_per_s=rows_per_s, copy_rows_per_s=copy,
        copy_ratio=rows_per_s / copy, cpu_us_by_part={"streamers": 30.0, "broker": 10.0},
        counts=Counts(expected=1600, delivered=stored),
    )


def test_the_pipeline_line_is_the_median_of_per_run_ratios_and_only_on_right_counts() -> None:
    runs = [pipeline_run(1, 10_000.0, 40_000.0), pipeline_run(2, 12_000.0, 20_000.0),
            pipeline_run(3, 9_000.0, 30_000.0)]
    cfg = BenchConfig(systems=("ferry",), scenarios=(Scenario.PIPELINE,))
    assert ratio_lines(runs, cfg).splitlines() == [
        "ratio pipeline/raw-copy rows_per_s: 0.30 (pipeline 10,000 rows/s, raw COPY 30,000 "
        "rows/s)",
        "pipeline CPU µs/row by part: streamers 30.0, broker 10.0",
    ]
    runs.append(pipeline_run(4, 20_000.0, 30_000.0, stored=1599))
    assert "n/a" in ratio_lines(runs, cfg)
