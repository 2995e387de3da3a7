"""Server processes for the benchmark: start, stop, RSS of a process tree.

Every server runs on 127.0.0.1 in its own temp dir, in its own process group,
so stopping it never touches anything the benchmark did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from testsupport.processes import Process

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


class ServerError(RuntimeError):
    """A server did not start, or died while the benchmark needed it."""


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found.extend(int(c) for c in text.split())
    return found


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p not in found:
            found.append(p)
            todo.extend(_children(p))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of pid and its live descendants, all threads included."""
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # Fields after the ")" that ends the command name: utime and stime are 12th, 13th.
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of pid and all its descendants (a shell wrapper's beam.smp counts)."""
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
    return total


class ServerProcess:
    """One server process (testsupport.Process): its output goes to a log file next to its
    data; the kernel sends it SIGTERM if the harness itself is killed."""

    def __init__(
        self, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None,
        cwd: Path | None = None, user: str | None = None,
    ) -> None:
        self.name = name
        self.process = Process(argv, log, env, name=name, cwd=cwd, user=user,
                               death=signal.SIGTERM)

    @property
    def pid(self) -> int:
        if self.process.proc is None:
            raise ServerError(f"{self.name} is not running")
        return self.process.pid

    def start(self) -> None:
        self.process.start()

    def returncode(self) -> int | None:
        """None while it runs (or was never started), else its exit code."""
        return self.process.returncode()

    def check_alive(self) -> None:
        if (code := self.returncode()) is not None:
            raise ServerError(f"{self.name} exited with code {code}; log "
                              f"{self.process.log}:\n{self.process.tail()}")

    def rss_bytes(self) -> int:
        return tree_rss_bytes(self.pid)

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    async def stop(self, grace_s: float = 60.0) -> None:
        """SIGTERM the process group (a graceful shutdown), SIGKILL after grace_s."""
        if self.process.proc is None:
            return
        pid = self.process.pid
        await asyncio.to_thread(self.process.stop, grace_s)
        self.process.proc = None  # as if never started: stop() again does nothing
        # Also ends helpers the server left in its group (erl_child_setup and the like).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


class Watched(Protocol):  # a server process, or a whole system (a driver)
    name: str

    def check_alive(self) -> None: ...


async def wait_until(
    probe: Callable[[], Awaitable[bool]], server: Watched, limit_s: float, what: str
) -> None:
    """Poll probe() until it answers True; fail fast if the server died meanwhile."""
    deadline = time.monotonic() + limit_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            if await probe():
                return
        except Exception as e:  # every client library raises its own tree while it boots
            last = e
        await asyncio.sleep(0.02)
    server.check_alive()
    raise ServerError(f"{server.name}: {what} not reached in {limit_s:.0f}s (last error: {last!r})")


async def retrying(attempt: Callable[[], Awaitable[object]], transient: Callable[[Exception], bool],
                   limit_s: float, interval: float) -> None:
    """Run attempt() until it succeeds. An error transient() says passes by itself (a
    clustered server counting a loaded, late peer as away) is retried until limit_s ran
    out, then raised like any other."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            await attempt()
            return
        except Exception as e:
            if not transient(e) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)
