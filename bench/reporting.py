"""Medians over runs, one markdown table per scenario, the ratio lines and the JSON report."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import statistics
import subprocess
from collections.abc import Iterable
from pathlib import Path

from bench.results import Report, Result
from bench.settings import BenchConfig, Scenario, reference

RATIO_SIZE = 256
THROUGHPUT = (
    ("msgs_per_s", "msgs/s", ",.0f"), ("mib_per_s", "MiB/s", ".1f"),
    ("broker_cpu_us", "broker CPU µs/msg", ".1f"), ("client_cpu_us", "client CPU µs/msg", ".1f"),
)
COLUMNS: dict[Scenario, tuple[tuple[str, str, str], ...]] = {
    # (result field, column title, format)
    Scenario.PUBLISH: THROUGHPUT,
    Scenario.E2E: THROUGHPUT,
    Scenario.LATENCY: (
        ("p50_ms", "p50 ms", ".2f"), ("p99_ms", "p99 ms", ".2f"), ("max_ms", "max ms", ".1f"),
        ("achieved_rate", "offered msgs/s", ",.0f"),
    ),
    Scenario.BACKLOG: (
        ("load_msgs_per_s", "load msgs/s", ",.0f"), ("rss_loaded_mb", "RSS loaded MiB", ",.0f"),
        ("restart_serving_s", "restart->serving s", ".2f"),
        ("rss_restarted_mb", "RSS restarted MiB", ",.0f"),
    ),
    Scenario.PIPELINE: (
        ("rows_per_s", "rows/s", ",.0f"), ("copy_rows_per_s", "raw COPY rows/s", ",.0f"),
        ("copy_ratio", "x raw COPY", ".2f"), ("cpu_us_per_row", "CPU µs/row", ".1f"),
    ),
    Scenario.IDLE: (
        ("idle_rss_mb", "broker RSS added MiB", ",.1f"),
        ("quiet_p99_ms", "publish p99 ms alone", ".2f"), ("p99_ms", "p99 ms with them", ".2f"),
        ("idle_p99_ratio", "p99 with/alone", ".2f"),
    ),
}
TITLES = {
    Scenario.PUBLISH: "(1) publish only: 1 producer, confirmed batches",
    Scenario.E2E: "(2) end to end: 1 producer, competing consumers, every message acked",
    Scenario.LATENCY: "(3) single-message publish latency at a fixed offered rate",
    Scenario.BACKLOG: "(4) backlog: graceful restart, time until a message is served again",
    Scenario.PIPELINE: "(5) telemetry pipeline: DCGM CSV -> streamers -> broker -> collectors "
                       "-> PostgreSQL, unpaced, against raw COPY of the same rows",
    Scenario.IDLE: "(6) idle subscribed consumers (each its own connection): broker RSS they "
                   "add, single-message publish p99 without and with them",
}


def title(scenario: Scenario, cfg: BenchConfig) -> str:
    if scenario == Scenario.E2E:
        return (f"(2) end to end: {cfg.producers} producer(s), {cfg.consumers} competing "
                "consumers, every message acked")
    if scenario == Scenario.IDLE:
        return f"{TITLES[scenario]} ({cfg.idle_consumers} of them)"
    return TITLES[scenario]


def key(system: str, scenario: Scenario, size: int) -> str:
    return f"{system}/{scenario.value}/{size}"


def _groups(results: Iterable[Result]) -> dict[str, list[Result]]:
    groups: dict[str, list[Result]] = {}
    for r in results:
        if r.run > 0:  # run 0 is the profiled pass: never in a median
            groups.setdefault(key(r.system, r.scenario, r.body_size), []).append(r)
    return groups


def medians(results: Iterable[Result]) -> dict[str, dict[str, float | None]]:
    """Per system/scenario/size: the median of each figure over the runs whose counts are ok."""
    out: dict[str, dict[str, float | None]] = {}
    for k, rs in _groups(results).items():
        good = [r for r in rs if r.ok]
        scenario = rs[0].scenario
        row: dict[str, float | None] = {"runs": len(rs), "runs_ok": len(good)}
        for fld, _, _ in COLUMNS[scenario]:
            values = [v for r in good if (v := getattr(r, fld)) is not None]
            row[fld] = statistics.median(values) if values else None
        row["duplicates_max"] = max((r.counts.duplicates for r in rs if r.counts), default=0)
        out[k] = row
    return out


def ratios(results: list[Result], systems: Iterable[str]) -> dict[str, float | None]:
    """Per peer: its Ferry (settings.reference) / peer e2e msgs/s at 256 B, both measured in
    this run; None unless every run of both sides counted right."""
    med = medians(results)
    out: dict[str, float | None] = {}
    for peer in systems:
        if peer.startswith("ferry") or reference(peer) not in systems:  # Ferry is no peer
            continue
        ferry = med.get(key(reference(peer), Scenario.E2E, RATIO_SIZE))
        other = med.get(key(peer, Scenario.E2E, RATIO_SIZE))
        ok = all(
            row is not None and row["runs"] == row["runs_ok"] and row["msgs_per_s"]
            for row in (ferry, other)
        )
        out[peer] = (ferry["msgs_per_s"] / other["msgs_per_s"]  # type: ignore[index,operator]
                     if ok else None)
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def tables(results: list[Result], cfg: BenchConfig) -> str:
    med = medians(results)
    durability = {r.system: r.durability for r in results}
    lines: list[str] = []
    for scenario in cfg.scenarios:
        rows = [(k, v) for k, v in med.items() if k.split("/")[1] == scenario.value]
        if not rows:
            continue
        cols = COLUMNS[scenario]
        lines += ["", f"## {title(scenario, cfg)}", ""]
        size = "rows/msg" if scenario == Scenario.PIPELINE else "body B"
        head = ["system", size, *(c[1] for c in cols), "runs ok", "durability"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for k, row in rows:
            system, _, size = k.split("/")
            runs_ok = f"{row['runs_ok']:.0f}/{row['runs']:.0f}"
            if row["runs_ok"] != row["runs"]:
                runs_ok += " COUNTS WRONG"
            if row["duplicates_max"]:
                runs_ok += f" ({row['duplicates_max']:.0f} dup)"
            cells = [system, size, *(_fmt(row[f], spec) for f, _, spec in cols), runs_ok,
                     durability[system]]
            lines.append("| " + " | ".join(cells) + " |")
        loads = [r.load_avg_1m for r in results
                 if r.scenario == scenario and r.run > 0 and r.load_avg_1m is not None]
        if loads:
            lines += ["", f"Machine load (1-min average) as these runs ended: "
                          f"{min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} CPUs."]
    errors = [r for r in results if r.error]
    if errors:
        lines += ["", "## errors", ""]
        lines += [f"- {r.system} {r.scenario.value} {r.body_size} B run {r.run}: {r.error}"
                  for r in errors]
    return "\n".join(lines)


def ratio_lines(results: list[Result], cfg: BenchConfig) -> str:
    lines = [] if Scenario.E2E not in cfg.scenarios else [
        f"ratio {reference(peer)}/{peer} e2e_msgs_per_s: "
        + ("n/a (a run lost or kept messages, see counts)" if r is None else f"{r:.2f}")
        for peer, r in ratios(results, cfg.systems).items()
    ]
    return "\n".join([*lines, *pipeline_lines(results)])


def pipeline_lines(results: list[Result]) -> list[str]:
    """The pipeline's rows/s and its ratio to raw COPY (medians of the per-run ratios),
    n/a unless every run stored every row exactly once."""
    runs = [r for r in results if r.scenario == Scenario.PIPELINE and r.run > 0]
    if not runs:
        return []
    if not all(r.ok for r in runs):
        return ["ratio pipeline/raw-copy rows_per_s: n/a (a run lost or doubled rows, see counts)"]
    ratio = statistics.median(r.copy_ratio or 0.0 for r in runs)
    rows = statistics.median(r.rows_per_s or 0.0 for r in runs)
    copy = statistics.median(r.copy_rows_per_s or 0.0 for r in runs)
    parts = {k: statistics.median((r.cpu_us_by_part or {}).get(k, 0.0) for r in runs)
             for k in (runs[0].cpu_us_by_part or {})}
    return [f"ratio pipeline/raw-copy rows_per_s: {ratio:.2f} "
            f"(pipeline {rows:,.0f} rows/s, raw COPY {copy:,.0f} rows/s)",
            "pipeline CPU µs/row by part: "
            + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())]


def _library(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def _package(name: str) -> str:
    """The Debian package's version."""
    argv = ["dpkg-query", "-W", "-f=${Version}", name]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


@functools.cache
def machine() -> dict[str, object]:
    libs = ("redis", "nats-py", "aio-pika", "aiohttp", "orjson", "uvloop", "pydantic")
    return {
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "kernel": platform.release(), "libraries": {p: _library(p) for p in libs},
        "servers": {p: _package(p) for p in ("redis-server", "nats-server", "rabbitmq-server")},
    }


def write_json(path: Path, results: list[Result], cfg: BenchConfig) -> None:
    report = Report(
        config=cfg.model_dump(mode="json"), machine=machine(), results=results,
        medians=medians(results), ratios=ratios(results, cfg.systems),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(report.model_dump_json(indent=2))
    tmp.replace(path)
