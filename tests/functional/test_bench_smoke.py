"""The benchmark harness works end to end: a tiny run of every scenario against real servers.

Counts only, never timings: each system must have delivered (and still hold,
or have removed) exactly what it was given, and the report must carry every
figure bench/README.md promises.
"""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.functional

SMOKE_SYSTEMS = ("ferry", "ferry-poll", "redis-everysec", "redis-always", "nats", "rabbitmq",
                 "ferry-pg", "nats-r3", "rabbitmq-r3")
BACKLOG_SYSTEMS = ("ferry", "redis-everysec", "nats")
MESSAGES = 300  # the --smoke preset
LIVENESS_S = 240

Json = dict[str, Any]
Smoke = tuple[subprocess.CompletedProcess[str], Json]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    try:
        # A liveness bound (the run takes about a minute), below pytest's own 300 s, so a
        # hang fails here with the harness's progress lines: which system and scenario.
        proc = subprocess.run(
            [sys.executable, "-m", "bench", "--smoke", "--systems", ",".join(SMOKE_SYSTEMS),
             "--backlog-systems", ",".join(BACKLOG_SYSTEMS), "--out", str(out)],
            cwd=ROOT, capture_output=True, text=True, timeout=LIVENESS_S,
        )
    except subprocess.TimeoutExpired as e:
        said = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        pytest.fail(f"bench --smoke still ran after {LIVENESS_S} s; its progress:\n{said}")
    assert proc.returncode == 0, f"bench exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc, json.loads(out.read_text())


def _results(report: Json, system: str, scenario: str) -> list[Json]:
    return [r for r in report["results"] if r["system"] == system and r["scenario"] == scenario]


@pytest.mark.parametrize("system", SMOKE_SYSTEMS)
def test_every_message_is_delivered_and_acked(smoke: Smoke, system: str) -> None:
    _, report = smoke
    for size in (256, 4096):
        (e2e,) = [r for r in _results(report, system, "e2e") if r["body_size"] == size]
        assert e2e["error"] is None
        assert e2e["counts"]["expected"] == MESSAGES
        assert e2e["counts"]["delivered"] == MESSAGES
        assert e2e["counts"]["unacked_after"] == 0


@pytest.mark.parametrize("system", SMOKE_SYSTEMS)
def test_published_messages_are_held_by_the_broker(smoke: Smoke, system: str) -> None:
    _, report = smoke
    held = _results(report, system, "publish") + _results(report, system, "latency")
    assert len(held) == 3  # publish at 256 B and 4 KiB, latency at 256 B
    for r in held:
        assert r["error"] is None
        assert r["messages"] > 0
        assert r["counts"]["unacked_after"] == r["messages"]
    assert all(r["p99_ms"] is not None for r in _results(report, system, "latency"))


@pytest.mark.parametrize("system", BACKLOG_SYSTEMS)
def test_a_restart_keeps_the_backlog(smoke: Smoke, system: str) -> None:
    _, report = smoke
    (r,) = _results(report, system, "backlog")
    assert r["error"] is None
    # Held every message before the restart; served one after it, so one fewer remains.
    assert r["counts"]["delivered"] == MESSAGES
    assert r["counts"]["unacked_after"] == MESSAGES - 1
    assert r["restart_serving_s"] is not None
    assert r["rss_restarted_mb"] > 0


def test_report_has_a_table_per_scenario(smoke: Smoke) -> None:
    proc, report = smoke
    for title in ("(1) publish only", "(2) end to end", "(3) single-message", "(4) backlog",
                  "(5) telemetry pipeline"):
        assert title in proc.stdout
    assert set(report["medians"]) >= {f"{s}/e2e/256" for s in SMOKE_SYSTEMS}
    # One ratio line per peer, last, each with a number (every run counted right).
    # Replicated peers against Ferry on PostgreSQL with a synchronous standby.
    peers = [s for s in SMOKE_SYSTEMS if not s.startswith("ferry")]
    lines = [ln for ln in proc.stdout.splitlines()
             if ln.startswith("ratio ") and "e2e_msgs_per_s" in ln]
    assert [ln.split()[1] for ln in lines] == [
        f"{'ferry-pg' if p.endswith('-r3') else 'ferry'}/{p}" for p in peers]
    assert all(re.fullmatch(r"ratio ferry(-pg)?/\S+ e2e_msgs_per_s: \d+\.\d\d", ln)
               for ln in lines)
    assert set(report["ratios"]) == set(peers)


def test_the_pipeline_stores_every_generated_row_once_and_is_compared_with_raw_copy(
    smoke: Smoke,
) -> None:
    proc, report = smoke
    (r,) = _results(report, "ferry", "pipeline")
    assert r["error"] is None
    assert r["messages"] == 1600  # one scrape of the generated fleet
    assert r["counts"] == {"expected": 1600, "delivered": 1600, "duplicates": 0,
                           "unacked_after": 0, "expected_unacked_after": 0}
    assert r["rows_per_s"] > 0 and r["copy_rows_per_s"] > 0
    assert set(r["cpu_us_by_part"]) == {"streamers", "broker", "collectors", "postgres"}
    assert re.search(r"^ratio pipeline/raw-copy rows_per_s: \d+\.\d\d \(pipeline [\d,]+ "
                     r"rows/s, raw COPY [\d,]+ rows/s\)$", proc.stdout, re.MULTILINE)


def test_idle_consumers_stay_subscribed_through_a_latency_run(smoke: Smoke) -> None:
    proc, report = smoke
    (r,) = _results(report, "ferry", "idle")
    assert r["error"] is None
    assert r["counts"]["delivered"] == r["counts"]["expected"] == 20  # the --smoke preset
    assert r["idle_rss_mb"] is not None and r["quiet_p99_ms"] > 0 and r["p99_ms"] > 0
    assert "(6) idle subscribed consumers" in proc.stdout


def test_bad_arguments_are_refused_clearly() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--systems", "kafka"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "unknown system(s) kafka" in proc.stderr
