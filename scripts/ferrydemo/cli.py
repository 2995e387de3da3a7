"""`make demo`: Ferry's main job on one machine, from nothing to a verified pipeline.

A real control plane (etcd, kube-apiserver, kube-controller-manager) on loopback, Ferry's
CRDs, the operator, the example TelemetryPipeline; the pods the operator asks for run as
local processes (see `kubelet`), the HPA scales the collectors on lag; the sample is
streamed to completion at the example's pace, read back through the query API and checked
row by row, then a larger generated sample the same way unpaced (spec.streamer.ratePerSecond
0), so the summary shows the pipeline's speed beside its pacing limit. Every process stops
at the end or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType

from kubernetes.client.exceptions import ApiException
from testsupport.postgres import PostgresError
from testsupport.processes import ProcessFailedError

from ferrydemo.display import Console
from ferrydemo.pods import UnsupportedPodError
from ferrydemo.running import DemoError, Run, Settings, example_rate, plan

ROOT = Path(__file__).resolve().parents[2]
MAX_RATE = 1_000_000  # rows/s per streamer: far beyond what one streamer does, a typo guard
MAX_UNPACED_ROWS = 10_000_000
# The unpaced pass's generated sample, sized so that pass streams for about 30 s on 2 cores.
# Measured: `FERRY_CACHE=/work/cache make demo` end to end on the project's 2-core VM, shared
# (load ~5): 208,000 rows at 8,484 rows/s (24.5 s); 256,000 at 7,225 and 7,781 (35.4 and
# 32.9 s); 240,000 at 6,870 and 6,975 (34.9 and 34.4 s); whole demo 125 to 149 s. Their mean,
# ~7,470 rows/s x 30 s, in whole scrapes of the generated fleet (1,600 rows): 140 scrapes.
# Checked: 224,000 rows at 7,596 rows/s, 29.5 s; whole demo 138 s.
UNPACED_ROWS = 224_000


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="make demo",
        description="Run Ferry's GPU telemetry pipeline end to end on a local control plane, "
                    "show its live figures and verify every row arrived exactly once.")
    p.add_argument("--rows", type=int, default=None,
                   help="stream only the first ROWS rows of the sample (default: all)")
    p.add_argument("--rate", type=int, default=None, metavar="ROWS_PER_S",
                   help="one pass over the sample at this spec.streamer.ratePerSecond (rows/s "
                        f"per streamer, 0..{MAX_RATE:,}; 0 = unpaced) instead of the default "
                        "two: the example's own pace, then a generated sample unpaced")
    p.add_argument("--unpaced-rows", type=int, default=UNPACED_ROWS, metavar="ROWS",
                   help="rows of the generated sample the unpaced pass streams (default "
                        f"{UNPACED_ROWS:,}: about 30 s on 2 cores)")
    p.add_argument("--namespace", default="ferry-demo", help="namespace of the example resources")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="give up when the pipeline has not finished after this many seconds")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep logs and data here (default: a temporary folder, removed at the end)")
    p.add_argument("--summary-json", type=Path, default=None,
                   help="also write the summary figures to this file as JSON")
    p.add_argument("--failover", action="store_true",
                   help="run the queue on 2 broker pods over PostgreSQL and kill the leader "
                        "half-way: the standby takes over, the summary still checks every row "
                        "(the paced pass only)")
    return p


def problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, in a sentence; None if nothing."""
    if args.rows is not None and args.rows < 1:
        return "--rows must be at least 1"
    if args.rate is not None and not 0 <= args.rate <= MAX_RATE:
        return f"--rate must be between 0 (unpaced) and {MAX_RATE:,} rows/s per streamer"
    if not 1 <= args.unpaced_rows <= MAX_UNPACED_ROWS:
        return f"--unpaced-rows must be between 1 and {MAX_UNPACED_ROWS:,}"
    return None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if (wrong := problem(args)) is not None:
        print(f"make demo: {wrong}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    # Ferry's console scripts live next to this interpreter (the project's .venv).
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    keep = args.workdir is not None
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="ferry-demo-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in ("plane", "volumes", "logs", "image-files"):
        shutil.rmtree(workdir / stale, ignore_errors=True)  # a previous run's, never reused
    console = Console()
    passes = plan(rate=args.rate, failover=args.failover, unpaced_rows=args.unpaced_rows,
                  example_rate=example_rate(ROOT))
    run = Run(Settings(root=ROOT, workdir=workdir, namespace=args.namespace, rows=args.rows,
                       timeout=args.timeout, failover=args.failover, passes=passes), console)
    code = 1
    try:
        report = run.execute()
        if args.summary_json:
            args.summary_json.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        code = 0 if report.ok else 1
    except KeyboardInterrupt:
        console.out.write("\n")
        console.note("interrupted: stopping everything")
        code = 130
    except (DemoError, ProcessFailedError, UnsupportedPodError, PostgresError, OSError,
            ApiException,
            subprocess.CalledProcessError) as error:
        console.out.write("\n")
        detail = getattr(error, "stderr", None)
        console.note(f"error: {error}" + (f"\n{detail.strip()}" if detail else ""))
        console.note(f"logs: {workdir / 'logs'}")
        keep = True
    finally:
        # Ctrl-C during clean-up must not leave processes behind: ignore it until done.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stopped = run.teardown()
        console.note(f"stopped {stopped} processes and the control plane; nothing left running")
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
