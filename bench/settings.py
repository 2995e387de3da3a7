"""What one benchmark invocation does: systems, scenarios, sizes and counts."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Scenario(StrEnum):
    PUBLISH = "publish"  # (1) publish only
    E2E = "e2e"  # (2) 1 producer, N competing consumers, every message acked
    LATENCY = "latency"  # (3) single-message publish latency at a fixed offered rate
    BACKLOG = "backlog"  # (4) restart with a large backlog: time to serve again, RSS
    PIPELINE = "pipeline"  # (5) telemetry CSV -> streamers -> broker -> collectors -> PostgreSQL
    IDLE = "idle"  # (6) many idle subscribed consumers: broker RSS, publish p99 with them


SYSTEMS = ("ferry", "redis-everysec", "redis-always", "nats", "rabbitmq",
           "ferry-pg", "nats-r3", "rabbitmq-r3")
# Also known, not run unless asked for: "ferry-poll" (Ferry consuming by receive/ack batches).
KNOWN = (*SYSTEMS, "ferry-poll")
# Replicated peers are compared with Ferry replicated (PostgreSQL + a synchronous standby),
# the others with the embedded engine.
REPLICATED = ("nats-r3", "rabbitmq-r3")


def reference(peer: str) -> str:
    """The Ferry system a peer's ratio is taken against."""
    return "ferry-pg" if peer in REPLICATED else "ferry"
# Restarting with a million messages is cheap for these; RabbitMQ's quorum
# queue would need minutes to load one, so it joins only when asked for.
BACKLOG_SYSTEMS = ("ferry", "redis-everysec", "nats")

Positive = Annotated[int, Field(gt=0)]


class BenchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    systems: tuple[str, ...] = SYSTEMS
    scenarios: tuple[Scenario, ...] = tuple(Scenario)
    runs: Positive = 3
    messages: Positive = 30_000
    sizes: tuple[Positive, ...] = (256, 4096)
    batch: Positive = 100
    consumers: Positive = 2
    producers: Positive = Field(1, description="e2e producers, each its own connection")
    window: Positive = Field(1, description="batches a producer keeps in flight")
    rate: Positive = Field(2000, description="offered msgs/s in the latency scenario")
    latency_seconds: Annotated[float, Field(gt=0)] = 10.0
    latency_size: Positive = 256
    backlog: Positive = 1_000_000
    backlog_runs: Positive = Field(1, description="runs that include the backlog scenario")
    backlog_systems: tuple[str, ...] = BACKLOG_SYSTEMS
    backlog_size: Positive = 256
    backlog_batch: Positive = 1000
    profile_dir: Path | None = Field(None, description="py-spy an extra e2e pass into this dir")
    profile_systems: tuple[str, ...] = ("ferry",)
    e2e_timeout_s: Annotated[float, Field(gt=0)] = 600.0
    pipeline_rows: Positive = Field(160_000, description="generated DCGM rows (whole scrapes)")
    pipeline_streamers: Positive = 1  # each streamer reads the whole file (bench/README.md)
    pipeline_collectors: Positive = 2
    pipeline_rows_per_message: Annotated[int, Field(ge=1, le=1000)] = 100
    idle_consumers: Positive = 1000


def preset(name: str) -> BenchConfig:
    """full: what `make bench` reports; quick: a few minutes; smoke: a functional check."""
    if name == "full":
        return BenchConfig()
    if name == "quick":
        return BenchConfig(runs=1, messages=10_000, latency_seconds=3.0, backlog=100_000,
                           pipeline_rows=32_000)
    if name == "smoke":
        return BenchConfig(
            runs=1, messages=300, rate=400, latency_seconds=0.5, backlog=300,
            backlog_batch=100, e2e_timeout_s=120.0, pipeline_rows=1_600,
            idle_consumers=20,
        )
    raise ValueError(f"unknown preset {name!r}: use full, quick or smoke")
