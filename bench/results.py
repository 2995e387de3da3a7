"""Result records: one per (system, scenario, body size, run), written to JSON as they come."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from bench.settings import Scenario


class Counts(BaseModel):
    """What the broker delivered and holds afterwards: a ratio only stands on ok counts."""

    model_config = ConfigDict(extra="forbid")

    expected: int
    delivered: int = 0  # distinct messages seen by consumers (e2e) or confirmed (publish)
    duplicates: int = 0  # deliveries of a message already seen (redeliveries)
    unacked_after: int = 0  # what the broker still holds for the group at the end
    expected_unacked_after: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.delivered == self.expected
            and self.unacked_after == self.expected_unacked_after
        )


class Result(BaseModel):
    model_config = ConfigDict(extra="forbid")

    system: str
    durability: str
    scenario: Scenario
    body_size: int
    run: int
    messages: int
    counts: Counts | None = None
    error: str | None = None
    seconds: float | None = None
    msgs_per_s: float | None = None
    mib_per_s: float | None = None
    # CPU time per message, broker (server process tree) and client (the harness process):
    # far less sensitive than wall-clock rates to other load on a shared machine.
    broker_cpu_us: float | None = None
    client_cpu_us: float | None = None
    load_avg_1m: float | None = None  # the machine's load when the scenario ended
    # latency
    offered_rate: float | None = None
    achieved_rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    # backlog
    load_msgs_per_s: float | None = None
    rss_loaded_mb: float | None = None
    restart_serving_s: float | None = None
    rss_restarted_mb: float | None = None
    # pipeline (messages = rows; body_size = rows per message)
    rows_per_s: float | None = None  # CSV -> PostgreSQL, from starting the streamers
    copy_rows_per_s: float | None = None  # the same rows COPYed into the same table
    copy_ratio: float | None = None  # rows_per_s / copy_rows_per_s, same run
    cpu_us_per_row: float | None = None  # every process of the pipeline, per row stored
    cpu_us_by_part: dict[str, float] | None = None  # streamers, broker, collectors, postgres
    # idle (messages = idle consumers): broker RSS they add, publish p99 without and with them
    idle_rss_mb: float | None = None
    quiet_p99_ms: float | None = None
    idle_p99_ratio: float | None = None  # p99_ms (with them) / quiet_p99_ms

    @property
    def ok(self) -> bool:
        return self.error is None and self.counts is not None and self.counts.ok


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, object]
    machine: dict[str, object]
    results: list[Result]
    medians: dict[str, dict[str, float | None]] = {}
    ratios: dict[str, float | None] = {}
