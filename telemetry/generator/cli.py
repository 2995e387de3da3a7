"""`ferry-telemetry generate`: write synthetic DCGM exporter CSV (the sample, or load sets)."""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from ferry.kit.config import positive_int
from ferry.telemetry.generator.corrupting import broken
from ferry.telemetry.generator.fleet import samples
from ferry.telemetry.parsing.rows import COLUMNS, to_csv_record

DEFAULT_START = "2026-11-23T10:00:00Z"


def _start(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None
    if ts.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} lacks a timezone (add Z or +00:00)")
    return ts.astimezone(UTC)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ferry-telemetry", description="Telemetry pipeline tools.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser(
        "generate",
        help="write synthetic DCGM exporter CSV",
        description="Write synthetic DCGM exporter CSV: hosts x GPUs x DCGM_FI_* metrics.",
    )
    g.add_argument("--out", type=Path, help="output file (default: stdout)")
    g.add_argument("--hosts", type=positive_int, default=4, help="GPU hosts (default 4)")
    g.add_argument("--gpus-per-host", type=positive_int, default=8, help="default 8")
    g.add_argument(
        "--scrapes", type=positive_int, default=8, help="samples per GPU and metric (default 8)"
    )
    g.add_argument("--interval", type=positive_int, default=30, help="seconds between scrapes")
    g.add_argument("--start", type=_start, default=_start(DEFAULT_START), help="RFC 3339")
    g.add_argument("--seed", type=int, default=7, help="same seed, same file")
    g.add_argument(
        "--bad-rows",
        action="store_true",
        help="interleave one deliberately broken record per kind of mistake (for tests)",
    )
    return p


def write(args: argparse.Namespace, out: TextIO) -> tuple[int, int]:
    rows = samples(
        hosts=args.hosts,
        gpus_per_host=args.gpus_per_host,
        scrapes=args.scrapes,
        start=args.start,
        interval=timedelta(seconds=args.interval),
        seed=args.seed,
    )
    records = (to_csv_record(r) for r in rows)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    good = bad = 0
    if args.bad_rows:
        # Feed the breakages from their own stream so the good rows stay complete.
        spare = (
            to_csv_record(r)
            for r in samples(
                hosts=1,
                gpus_per_host=1,
                scrapes=100,
                start=args.start,
                interval=timedelta(seconds=args.interval),
                seed=args.seed + 1000,
            )
        )
        for (_, fields), chunk in zip(broken(spare), itertools.repeat(5), strict=False):
            for record in itertools.islice(records, chunk):
                writer.writerow([record[c] for c in COLUMNS])
                good += 1
            writer.writerow(fields)
            bad += 1
    for record in records:
        writer.writerow([record[c] for c in COLUMNS])
        good += 1
    return good, bad


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.out is None:
        good, bad = write(args, sys.stdout)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as f:
            good, bad = write(args, f)
    where = args.out or "stdout"
    print(f"wrote {good} rows ({bad} deliberately bad) to {where}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
