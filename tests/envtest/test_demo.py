"""`make demo` works: the whole demo, end to end, on reduced samples (paced, then unpaced).

It starts its own control plane, operator, PostgreSQL and the pods as local processes;
the summary it writes is checked against the sample read here, independently, and no
process of the run may outlive it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = 240
UNPACED_ROWS = 3200  # two scrapes of the generated fleet: every one of its 160 GPUs
FAILOVER_ROWS = 1000  # a few seconds of streaming: the leader dies while rows still flow
pytestmark = pytest.mark.envtest


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def _scaling(out: str) -> list[tuple[int, int]]:
    """The demo's `collectors N -> M (HPA on lag)` lines."""
    return [(int(n), int(m)) for n, m in
            re.findall(r"collectors (\d+) -> (\d+) \(HPA on lag\)", out)]


def check_scaling_shown(out: str) -> None:
    """Every change of the collectors' count the HPA made is shown, one after the other
    from the 1 it starts with: the most the summaries report (their peak) is one of them."""
    changes = _scaling(out)
    assert all(n != m for n, m in changes)
    assert [n for n, _ in changes] == [1, *[m for _, m in changes]][:len(changes)], changes
    peaks = [int(p) for p in re.findall(r"streamers / collectors\s+\d+ / (\d+) \(peak\)", out)]
    assert peaks and max(peaks) == max([1, *[m for _, m in changes]]), (peaks, changes)


def check_rates_agree(out: str) -> None:
    """Each pass shows one 100% progress line, and it gives the rate its summary does: one
    window, from the streamers' start to the last row stored, which the summary names (a
    live line at 100% just before the final one showed a second, different rate)."""
    finals = re.findall(r"\(100\.0%\).* ([\d,]+) rows/s\n", out)
    summaries = re.findall(r"throughput\s+([\d,]+) rows/s", out)
    assert summaries and finals == summaries, (finals, summaries)
    assert out.count("(from the streamers' start to the last row stored)") == len(summaries)


def _sample_rows(limit: int) -> int:
    with (ROOT / "examples" / "data" / "dcgm_sample.csv").open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    return min(limit, len(rows))


def _demo(tmp_path: Path, *args: str, rows: int = ROWS) -> tuple[str, list[dict[str, Any]]]:
    """Run the demo; its output and its passes' summaries, once checked for what every run
    must show."""
    workdir, summary_file = tmp_path / "demo", tmp_path / "summary.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo"), "--rows", str(rows),
         "--workdir", str(workdir), "--summary-json", str(summary_file), "--timeout", "240",
         *args],
        capture_output=True, text=True, env=env, timeout=900, check=False)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]

    summary: dict[str, Any] = json.loads(summary_file.read_text())
    passes: list[dict[str, Any]] = summary["passes"]
    assert summary["ok"] is True and passes
    assert passes[0]["rows_in_sample"] == _sample_rows(rows)
    for one in passes:
        # Each pass counted on its own: a row of an earlier pass would be "unexpected".
        assert one["rows_stored"] == one["rows_in_sample"] - one["rows_rejected"]
        assert one["missing"] == 0 and one["duplicates"] == 0 and one["unexpected"] == 0
        assert one["ok"] is True and one["gpus"] > 0 and one["streamers"] >= 2
        assert f"{one['rows_stored']}/{one['rows_stored']} rows stored" in out

    # What a user reads: every step, the progress bar, live figures, the summary.
    # The collectors' HPA reads the group's lag from the metrics API the demo registered.
    assert "ScalingActive True (ValidMetricFound)" in out
    steps = 6 + 4 * len(passes)
    assert f"[{steps}/{steps}]" in out
    assert "queue.ferry.dev/gpu-telemetry" in out and "READY   DEPTH" in out
    assert "duplicates" in out and "nothing left running" in out
    check_scaling_shown(out)
    check_rates_agree(out)
    assert not _processes_mentioning(str(workdir)), "the demo left processes behind"
    return out, passes


def test_demo_streams_paced_then_unpaced_each_exactly_once_and_cleans_up(
        tmp_path: Path) -> None:
    out, passes = _demo(tmp_path, "--unpaced-rows", str(UNPACED_ROWS))
    assert [(p["label"], p["rate_per_streamer"]) for p in passes] == [
        ("paced", 100), ("unpaced", 0)]  # the example's spec.streamer.ratePerSecond, then 0
    unpaced = passes[1]
    assert unpaced["rows_in_sample"] == UNPACED_ROWS and unpaced["rows_rejected"] == 0
    assert unpaced["gpus"] == 160 and unpaced["throughput"] > 0
    assert all(p["takeover_seconds"] is None for p in passes)
    # The paced pass's figure counts from the streamers' start: never above their pace.
    paced = passes[0]
    assert 0 < paced["throughput"] <= paced["rate_per_streamer"] * paced["streamers"]
    assert "Throughput, paced and unpaced:" in out and "TRUNCATE telemetry_samples" in out


def test_demo_failover_kills_the_leader_and_loses_nothing(tmp_path: Path) -> None:
    """--failover: two broker pods over PostgreSQL, the leader killed half-way through the
    paced pass (the only one); _demo checked every row arrived exactly once."""
    out, passes = _demo(tmp_path, "--failover", rows=FAILOVER_ROWS)
    assert len(passes) == 1
    summary = passes[0]
    assert summary["takeover_seconds"] is not None and summary["takeover_seconds"] > 0
    killed = summary["failover"].split()[1]
    assert f"pod {killed}: exited -9" in out  # the kubelet saw the kill and restarts it
    assert "took over in" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--rows", "0"], "--rows must be at least 1"),
    (["--rate", "-1"], "--rate must be between 0 (unpaced) and 1,000,000 rows/s per streamer"),
])
def test_demo_refuses_bad_arguments_clearly(argv: list[str], message: str) -> None:
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo"), *argv],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 2 and f"make demo: {message}" in run.stderr
