"""The demo's local processes (testsupport.Process): started with their own env and log,
stopped for sure, newest first.

Each child runs in its own session (so a Ctrl-C in the terminal reaches the demo,
which then stops the children in order) and is killed by the kernel if the demo
itself dies, so no run can leave a process behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testsupport.processes import Process


@dataclass
class Supervisor:
    """Starts named processes; `stop_all` stops them newest first (SIGTERM, then SIGKILL)."""

    log_dir: Path
    grace: float = 15.0
    children: list[Process] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
              user: str | None = None, cwd: Path | None = None) -> Process:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child = Process(argv, self.log_dir / f"{name}.log", env, name=name, cwd=cwd, user=user)
        self.children.append(child.start())
        return child

    def check(self) -> None:
        """Raise ProcessFailedError for the first child that is no longer running."""
        for child in self.children:
            child.check()

    def stop(self, child: Process) -> int | None:
        """SIGTERM the child's process group, SIGKILL after the grace period; its exit code."""
        if child in self.children:
            self.children.remove(child)
        return child.stop(self.grace)

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child)

