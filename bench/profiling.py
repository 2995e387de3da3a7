"""py-spy sampling of the broker (and of the harness, which runs the client) during a scenario.

py-spy writes collapsed stacks ("frame;frame;frame count"); summarize() turns
them into the tables the closing note needs: where the CPU time goes, by
function (self and inclusive) and by area (transport, store, pydantic, ...).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from bench.drivers.base import Driver

RATE = 250  # samples/s: enough for a few seconds' scenario, cheap for the target
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
# Areas in order of precedence: a frame in the first matching area is charged to it.
AREAS = (
    ("ferry store (SQLite, fsync)", ("broker/store/", "sqlite3")),
    ("ferry core", ("broker/core/",)),
    ("ferry transport", ("broker/transport/",)),
    ("ferry client", ("broker/client/",)),
    ("pydantic", ("pydantic",)),
    ("json (orjson/json)", ("orjson", "json/")),
    ("aiohttp", ("aiohttp", "multidict", "yarl")),
    ("event loop (uvloop C code: polling, socket I/O; asyncio)", ("asyncio", "uvloop")),
    ("bench harness", ("bench/scenarios.py", "bench/drivers/")),
    ("peer clients", ("redis", "nats", "aio_pika", "aiormq", "pamqp")),
    ("telemetry storage (asyncpg)", ("telemetry/storage/", "asyncpg")),
    ("telemetry parsing", ("telemetry/parsing/",)),
    ("telemetry streamer, collector", ("telemetry/streamer/", "telemetry/collector/")),
)
FERRY_LAYERS = AREAS[:4]


def py_spy() -> str:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        raise RuntimeError("py-spy is not installed: `make bench` installs the bench extra")
    return exe


class Profiler:
    def __init__(self, out: Path) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)

    def recording(self, driver: Driver, label: str) -> contextlib.AbstractContextManager[None]:
        """Sample the broker process and this process while the block runs."""
        if driver.server is None:
            raise RuntimeError(f"{driver.name} has no server process to profile")
        targets = {"broker": driver.server.pid, "harness": os.getpid()}
        return self.sampling(targets, f"{driver.name}-{label}")

    @contextlib.contextmanager
    def sampling(self, targets: dict[str, int], label: str) -> Iterator[None]:
        """Sample each named process (a "broker" with its children) while the block runs;
        a target that exits meanwhile (a streamer done) keeps what was sampled until then."""
        t0 = time.monotonic()
        procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        for who, pid in targets.items():
            raw = self.out / f"{label}-{who}.txt"
            argv = [py_spy(), "record", "--pid", str(pid), "--rate", str(RATE), "--format",
                    "raw", "--threads", "--nonblocking", "--output", str(raw)]
            if who == "broker":  # Ferry's committer is a child process of the broker
                argv.append("--subprocesses")
            procs[who] = (subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL), raw)
        try:
            yield
        finally:
            seconds = time.monotonic() - t0
            for proc, _ in procs.values():
                proc.send_signal(signal.SIGINT)
            for who, (proc, raw) in procs.items():
                proc.wait(60)
                if raw.exists():
                    summary = summarize(raw.read_text(), seconds)
                    (self.out / f"{label}-{who}-summary.txt").write_text(summary)


def _parse(raw: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def _short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "/lib/python3.11/", "/work/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m['func']} ({path})"


def _area(frames: list[str], areas: tuple[tuple[str, tuple[str, ...]], ...] = AREAS) -> str:
    # Innermost frame first: time in pydantic called from the transport is pydantic's.
    for frame in reversed(frames):
        for area, needles in areas:
            if any(n in frame for n in needles):
                return area
    return "other"


def summarize(raw: str, seconds: float, top: int = 25, rate: int = RATE) -> str:
    """Tables of where busy time went; percentages are of all busy samples taken at `rate`."""
    stacks = _parse(raw)
    total = sum(c for _, c in stacks) or 1
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for frames, count in stacks:
        body = frames[1:] if frames and frames[0].startswith(("thread ", "process ")) else frames
        if body is not frames:
            threads[frames[0]] += count
        if not body:
            continue
        self_t[_short(body[-1])] += count
        for f in {_short(f) for f in body}:
            incl[f] += count
        areas[_area(body)] += count
        layers[_area(body, FERRY_LAYERS).replace("other", "outside Ferry's code")] += count

    def table(title: str, counter: Counter[str], of: float = total) -> list[str]:
        return [title, *(f"  {100 * c / of:5.1f}%  {name}" for name, c in counter.most_common(top))]

    lines = [f"{total} busy samples at {rate}/s over {seconds:.1f}s of wall time; idle "
             "threads (waiting in epoll/locks) are not sampled"]
    lines += table("busy share of wall time, per thread:", threads, rate * seconds or 1)
    lines += table("by area (innermost matching frame):", areas)
    lines += table("by Ferry layer (library time charged to the Ferry code calling it):", layers)
    lines += table("self time by function:", self_t)
    lines += table("inclusive time by function:", incl)
    return "\n".join(lines) + "\n"
