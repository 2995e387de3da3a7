"""`make demo`: Ferry's main job on one machine, from nothing to a verified pipeline.

A real control plane (etcd, kube-apiserver, kube-controller-manager) on loopback, Ferry's
CRDs, the operator, the example TelemetryPipeline; the pods the operator asks for run as
local processes (see `kubelet`), the HPA scales the collectors on lag; the sample is
streamed to completion, read back through the query API and checked row by row. Every
process stops at the end or on Ctrl-C.
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
from ferrydemo.running import DemoError, Run, Settings

ROOT = Path(__file__).resolve().parents[2]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="make demo",
        description="Run Ferry's GPU telemetry pipeline end to end on a local control plane, "
                    "show its live figures and verify every row arrived exactly once.")
    p.add_argument("--rows", type=int, default=None,
                   help="stream only the first ROWS rows of the sample (default: all)")
    p.add_argument("--namespace", default="ferry-demo", help="namespace of the example resources")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="give up when the pipeline has not finished after this many seconds")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep logs and data here (default: a temporary folder, removed at the end)")
    p.add_argument("--summary-json", type=Path, default=None,
                   help="also write the summary figures to this file as JSON")
    p.add_argument("--failover", action="store_true",
                   help="run the queue on 2 broker pods over PostgreSQL and kill the leader "
                        "half-way: the standby takes over, the summary still checks every row")
    return p


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.rows is not None and args.rows < 1:
        print("make demo: --rows must be at least 1", file=sys.stderr)
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
    run = Run(Settings(root=ROOT, workdir=workdir, namespace=args.namespace, rows=args.rows,
                       timeout=args.timeout, failover=args.failover), console)
    code = 1
    try:
        summary = run.execute()
        if args.summary_json:
            args.summary_json.write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
        code = 0 if summary.ok else 1
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
