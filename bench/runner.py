"""Runs the configured scenarios for every system, run after run, and keeps every figure.

Runs are interleaved (run 1 of every system, then run 2, ...) so a noisy
minute on the shared machine hurts every system alike. Each system gets a
fresh server in a fresh temp dir per run; the backlog scenario gets its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

from bench import idle, pipeline, scenarios
from bench.drivers.base import Driver
from bench.drivers.ferry import FerryDriver
from bench.profiling import Profiler
from bench.results import Result
from bench.settings import BenchConfig, Scenario
from bench.systems import make_driver

log = logging.getLogger("bench")
Sink = Callable[[Result], None]
ScenarioFn = Callable[[Driver, BenchConfig, int, int], Awaitable[Result]]


async def _guarded(
    system: tuple[str, str], scenario: Scenario, size: int, run: int, n: int,
    body: Callable[[], Awaitable[Result]], sink: Sink,
) -> None:
    """Run one scenario of `system` (name, durability); a failure becomes a Result."""
    name, durability = system
    log.info("%s: %s, %d B, run %d ...", name, scenario.value, size, run)
    try:
        res = await body()
    except Exception as e:
        log.exception("%s: %s failed", name, scenario.value)
        res = Result(system=name, durability=durability, scenario=scenario,
                     body_size=size, run=run, messages=n, error=f"{type(e).__name__}: {e}")
    res.load_avg_1m = os.getloadavg()[0]
    sink(res)
    log.info("%s: %s, %d B, run %d: %s", name, scenario.value, size, run, _brief(res))


def _who(driver: Driver) -> tuple[str, str]:
    return driver.name, driver.durability


def _brief(res: Result) -> str:
    if res.error:
        return f"ERROR {res.error}"
    figures = {k: v for k, v in res.model_dump(exclude={"counts"}).items()
               if k.endswith(("_per_s", "_ms", "_s", "_mb")) and v is not None}
    shown = ", ".join(f"{k}={v:.1f}" for k, v in figures.items())
    return f"{shown}; counts {'ok' if res.ok else 'WRONG'}: {res.counts}"


async def _throughput_and_latency(driver: Driver, cfg: BenchConfig, run: int, sink: Sink) -> None:
    for size in cfg.sizes:
        if Scenario.PUBLISH in cfg.scenarios:
            await _guarded(_who(driver), Scenario.PUBLISH, size, run, cfg.messages,
                           partial(scenarios.publish_only, driver, cfg, size, run), sink)
        if Scenario.E2E in cfg.scenarios:
            await _guarded(_who(driver), Scenario.E2E, size, run, cfg.messages,
                           partial(scenarios.end_to_end, driver, cfg, size, run), sink)
    if Scenario.LATENCY in cfg.scenarios:
        await _guarded(_who(driver), Scenario.LATENCY, cfg.latency_size, run,
                       int(cfg.rate * cfg.latency_seconds),
                       partial(scenarios.latency, driver, cfg, run), sink)


@contextlib.asynccontextmanager
async def _started(driver: Driver) -> AsyncIterator[Driver]:
    try:
        await driver.start()  # a system that cannot start fails loudly: never skipped
        yield driver
    finally:
        await driver.stop()


async def _one_system(name: str, cfg: BenchConfig, run: int, root: Path, sink: Sink) -> None:
    if {Scenario.PUBLISH, Scenario.E2E, Scenario.LATENCY} & set(cfg.scenarios):
        async with _started(make_driver(name, root / f"{name}-run{run}")) as driver:
            await _throughput_and_latency(driver, cfg, run, sink)
    if Scenario.IDLE in cfg.scenarios and name == "ferry":  # a Ferry-only measurement
        # Room for every idle consumer's connection besides the benchmark's own.
        async with _started(FerryDriver(root / f"{name}-idle-run{run}",
                                        max_connections=cfg.idle_consumers + 100)) as driver:
            await _guarded(_who(driver), Scenario.IDLE, cfg.latency_size, run,
                           cfg.idle_consumers, partial(idle.idle, driver, cfg, run), sink)
    if (Scenario.BACKLOG in cfg.scenarios and name in cfg.backlog_systems
            and run <= cfg.backlog_runs):
        async with _started(make_driver(name, root / f"{name}-backlog-run{run}")) as driver:
            await _guarded(_who(driver), Scenario.BACKLOG, cfg.backlog_size, run, cfg.backlog,
                           partial(scenarios.backlog, driver, cfg, run), sink)


async def profile_pass(name: str, cfg: BenchConfig, root: Path, sink: Sink) -> None:
    """An extra e2e run (run 0, left out of the medians) sampled by py-spy, and an extra
    publish-only run when that scenario is asked for, each on a fresh server."""
    assert cfg.profile_dir is not None
    profiler = Profiler(cfg.profile_dir)
    size = cfg.sizes[0]
    passes = [(Scenario.E2E, scenarios.end_to_end)]
    if Scenario.PUBLISH in cfg.scenarios:
        passes.insert(0, (Scenario.PUBLISH, scenarios.publish_only))
    for scenario, scenario_fn in passes:
        driver = make_driver(name, root / f"{name}-profile-{scenario}")

        async def sampled(
            driver: Driver = driver, scenario: Scenario = scenario, fn: ScenarioFn = scenario_fn
        ) -> Result:
            with profiler.recording(driver, f"{scenario}-{size}"):
                return await fn(driver, cfg, size, 0)

        async with _started(driver):
            await _guarded(_who(driver), scenario, size, 0, cfg.messages, sampled, sink)


async def run_all(cfg: BenchConfig, sink: Sink, keep: Path | None = None) -> None:
    """Every system, every run; data dirs live in a temp dir removed at the end (unless keep)."""
    root = Path(tempfile.mkdtemp(prefix="ferry-bench-", dir=keep))
    # SIGTERM cancels the run, so the finally blocks stop every server and remove the data.
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        for run in range(1, cfg.runs + 1):
            for name in cfg.systems:
                await _one_system(name, cfg, run, root, sink)
                if keep is None:  # a million-message backlog is GBs: do not keep it around
                    for d in (root / f"{name}-run{run}", root / f"{name}-backlog-run{run}",
                              root / f"{name}-idle-run{run}"):
                        shutil.rmtree(d, ignore_errors=True)
            # Ferry's own telemetry pipeline: no peer runs it, its yardstick is raw COPY.
            if Scenario.PIPELINE in cfg.scenarios and "ferry" in cfg.systems:
                where = root / f"pipeline-run{run}"
                await _guarded(("ferry", pipeline.DURABILITY), Scenario.PIPELINE,
                               cfg.pipeline_rows_per_message, run, cfg.pipeline_rows,
                               partial(pipeline.pipeline, cfg, run, where), sink)
                if keep is None:
                    shutil.rmtree(where, ignore_errors=True)
        for name in cfg.profile_systems if cfg.profile_dir is not None else ():
            if set(cfg.scenarios) - {Scenario.PIPELINE}:
                await profile_pass(name, cfg, root, sink)
        if (cfg.profile_dir is not None and Scenario.PIPELINE in cfg.scenarios
                and "ferry" in cfg.systems):
            where = root / "pipeline-profile"
            await _guarded(("ferry", pipeline.DURABILITY), Scenario.PIPELINE,
                           cfg.pipeline_rows_per_message, 0, cfg.pipeline_rows,
                           partial(pipeline.pipeline, cfg, 0, where, Profiler(cfg.profile_dir)),
                           sink)
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
