"""`make demo` works: the whole demo, end to end, on a reduced sample.

It starts its own control plane, operator, PostgreSQL and the pods as local processes;
the summary it writes is checked against the sample read here, independently, and no
process of the run may outlive it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = 240
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


def _sample_rows(limit: int) -> int:
    with (ROOT / "examples" / "data" / "dcgm_sample.csv").open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    return min(limit, len(rows))


def _demo(tmp_path: Path, *args: str, rows: int = ROWS) -> tuple[str, dict[str, Any]]:
    """Run the demo; its output and summary, once checked for what every run must show."""
    workdir, summary_file = tmp_path / "demo", tmp_path / "summary.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo"), "--rows", str(rows),
         "--workdir", str(workdir), "--summary-json", str(summary_file), "--timeout", "240",
         *args],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]

    summary: dict[str, Any] = json.loads(summary_file.read_text())
    assert summary["rows_in_sample"] == _sample_rows(rows)
    assert summary["rows_stored"] == summary["rows_in_sample"] - summary["rows_rejected"]
    assert summary["missing"] == 0 and summary["duplicates"] == 0 and summary["unexpected"] == 0
    assert summary["ok"] is True and summary["gpus"] > 0 and summary["streamers"] >= 2

    # What a user reads: every step, the progress bar, live figures, the summary.
    assert "[9/9]" in out and f"{rows}/{rows} rows stored" in out
    assert "queue.ferry.dev/gpu-telemetry" in out and "READY   DEPTH" in out
    assert "duplicates" in out and "nothing left running" in out
    assert not _processes_mentioning(str(workdir)), "the demo left processes behind"
    return out, summary


def test_demo_streams_the_sample_exactly_once_and_cleans_up(tmp_path: Path) -> None:
    _, summary = _demo(tmp_path)
    assert summary["takeover_seconds"] is None


def test_demo_failover_kills_the_leader_and_loses_nothing(tmp_path: Path) -> None:
    """--failover: two broker pods over PostgreSQL, the leader killed half-way; _demo checked
    every row arrived exactly once."""
    out, summary = _demo(tmp_path, "--failover", rows=FAILOVER_ROWS)
    assert summary["takeover_seconds"] is not None and summary["takeover_seconds"] > 0
    killed = summary["failover"].split()[1]
    assert f"pod {killed}: exited -9" in out  # the kubelet saw the kill and restarts it
    assert "took over in" in out


def test_demo_refuses_bad_arguments_clearly() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo"), "--rows", "0"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 2 and "--rows must be at least 1" in run.stderr
