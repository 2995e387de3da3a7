"""`python -m bench`: run the side-by-side benchmark and print/write its figures."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import time
from pathlib import Path

import uvloop
from testsupport.postgres import PostgresError, bindir

from bench import reporting
from bench.results import Result
from bench.runner import run_all
from bench.settings import KNOWN, SYSTEMS, BenchConfig, Scenario, preset
from bench.systems import FACTORIES

BINARIES = {"redis": "redis-server", "nats": "nats-server", "rabbitmq": "rabbitmq-server",
            "ferry": "ferry-broker"}


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Ferry against Redis Streams, NATS JetStream and RabbitMQ on loopback, "
        "same work, comparable durability; prints a table per scenario and ferry/peer ratios.",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="1 run, 10k messages, 100k backlog")
    # full (the default): 3 runs, 30k messages per throughput scenario, 1M backlog once
    mode.add_argument("--smoke", action="store_true",
                      help="a few hundred messages: checks the harness, not speed")
    p.add_argument("--runs", type=int, help="repeat everything N times; report medians")
    p.add_argument("--systems", type=_csv, help=f"comma list (default: {','.join(SYSTEMS)})")
    p.add_argument("--scenarios", type=_csv,
                   help=f"comma list of {','.join(s.value for s in Scenario)} (default: all)")
    p.add_argument("--messages", type=int, help="messages per throughput scenario")
    p.add_argument("--sizes", type=_csv, help="body sizes in bytes, e.g. 256,4096")
    p.add_argument("--batch", type=int, help="publish/receive batch size (default 100)")
    p.add_argument("--consumers", type=int, help="competing consumers in e2e (default 2)")
    p.add_argument("--producers", type=int,
                   help="producers in e2e, each on its own connection (default 1)")
    p.add_argument("--window", type=int, help="batches a producer keeps in flight (default 1)")
    p.add_argument("--rate", type=int, help="offered msgs/s for the latency scenario")
    p.add_argument("--latency-seconds", type=float)
    p.add_argument("--backlog", type=int, help="messages in the restart scenario")
    p.add_argument("--backlog-systems", type=_csv, help="systems that run the backlog scenario")
    p.add_argument("--backlog-runs", type=int,
                   help="how many of the runs include the backlog scenario (default 1)")
    p.add_argument("--pipeline-rows", type=int,
                   help="generated DCGM rows in the pipeline scenario (whole scrapes of 1,600)")
    p.add_argument("--pipeline-streamers", type=int, help="streamer processes (default 1)")
    p.add_argument("--pipeline-collectors", type=int, help="collector processes (default 2)")
    p.add_argument("--rows-per-message", type=int, dest="pipeline_rows_per_message",
                   help="the streamers' --rows-per-message in the pipeline scenario (default 100)")
    p.add_argument("--idle-consumers", type=int,
                   help="idle subscribed consumers in the idle scenario (default 1000)")
    p.add_argument("--profile", type=Path, metavar="DIR", dest="profile_dir",
                   help="also run one py-spy-sampled e2e pass of ferry (and a pipeline pass, each "
                        "process sampled, when pipeline is a scenario); summaries go to DIR")
    p.add_argument("--out", type=Path, default=Path("bench/results/latest.json"),
                   help="JSON report (default bench/results/latest.json)")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="keep server data dirs and logs under DIR")
    p.add_argument("-v", "--verbose", action="store_true", help="log every scenario run")
    return p.parse_args(argv)


def build_config(a: argparse.Namespace) -> BenchConfig:
    base = preset("smoke" if a.smoke else "quick" if a.quick else "full")
    # Every option named after a BenchConfig field overrides the preset when given (sizes
    # come as strings: pydantic turns "256" into 256 and rejects "abc" as bad arguments).
    given = {k: v for k, v in vars(a).items() if k in BenchConfig.model_fields and v is not None}
    cfg = BenchConfig.model_validate({**base.model_dump(), **given})
    unknown = [s for s in cfg.systems if s not in FACTORIES]
    unknown += [s for s in cfg.backlog_systems if s not in KNOWN]
    if unknown:
        raise SystemExit(f"bench: unknown system(s) {', '.join(unknown)}; "
                         f"known: {', '.join(FACTORIES)}")
    return cfg


def check_binaries(cfg: BenchConfig) -> None:
    """A requested system whose server is missing is an error, never a silent skip."""
    missing = sorted({
        BINARIES[s.split("-")[0]] for s in cfg.systems
        if not shutil.which(BINARIES[s.split("-")[0]], path=f"{Path(sys.executable).parent}:"
                            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    })
    if "ferry-pg" in cfg.systems or (Scenario.PIPELINE in cfg.scenarios
                                     and "ferry" in cfg.systems):
        try:
            bindir()
        except PostgresError:
            missing.append("postgresql (`make postgres`)")
    if missing:
        raise SystemExit(f"bench: {', '.join(missing)} not installed; `make bench` installs them")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = build_config(args)
    except ValueError as e:
        print(f"bench: bad arguments: {e}", file=sys.stderr)
        return 2
    check_binaries(cfg)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    results: list[Result] = []
    started = time.monotonic()

    def sink(res: Result) -> None:
        results.append(res)
        reporting.write_json(args.out, results, cfg)  # a partial run still leaves its figures
        mark = "ok" if res.ok else "FAILED"
        unit = "rows/msg" if res.scenario == Scenario.PIPELINE else "B"
        print(f"  [{time.monotonic() - started:6.0f}s] {res.system:15} {res.scenario.value:8} "
              f"{res.body_size:5} {unit} run {res.run}: {mark}", file=sys.stderr, flush=True)

    interrupted = False
    try:
        uvloop.run(run_all(cfg, sink, keep=args.keep))
    except (KeyboardInterrupt, asyncio.CancelledError):  # SIGINT / SIGTERM: report what we have
        interrupted = True
    print(reporting.tables(results, cfg))
    print()
    print(reporting.ratio_lines(results, cfg))
    print(f"\nJSON: {args.out}")
    if interrupted:
        print("bench: interrupted; the figures above are partial", file=sys.stderr)
        return 130
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
