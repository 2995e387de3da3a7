"""The demo's local processes: started with their own env and log, stopped for sure.

Each child runs in its own session (so a Ctrl-C in the terminal reaches the demo,
which then stops the children in order) and is killed by the kernel if the demo
itself dies, so no run can leave a process behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testsupport.processes import die_with_parent, tail


class ProcessFailedError(RuntimeError):
    """A supervised process exited while the demo still needed it."""

    def __init__(self, name: str, code: int, log: Path) -> None:
        self.name, self.code, self.log = name, code, log
        super().__init__(f"{name} exited with code {code}; last lines of {log}:\n{tail(log, 20)}")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Supervisor:
    """Starts named processes; `stop_all` stops them newest first (SIGTERM, then SIGKILL)."""

    log_dir: Path
    grace: float = 15.0
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
              user: str | None = None, cwd: Path | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as sink:
            # preexec_fn runs after the user switch, which would clear an earlier death signal.
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})}, start_new_session=True, close_fds=True,
                preexec_fn=die_with_parent(), user=user, cwd=cwd,
            )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise ProcessFailedError for the first child that is no longer running."""
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                raise ProcessFailedError(child.name, code, child.log)

    def stop(self, child: Child) -> int | None:
        """SIGTERM the child's process group, SIGKILL after the grace period; its exit code."""
        for sig, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, 10.0)):
            if child.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(wait)
        if child in self.children:
            self.children.remove(child)
        return child.proc.poll()

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child)

    def wait(self, child: Child, timeout: float) -> int | None:
        """Wait for a child to finish on its own; its exit code, or None if it still runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = child.proc.poll()
            if code is not None:
                return code
            time.sleep(0.1)
        return None
