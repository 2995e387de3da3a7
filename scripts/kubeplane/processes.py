"""The plane's server processes: each in its own process group, with a pidfile and a log.

Pidfiles record the pid and the binary, so `stop` from another process (the CLI) only
signals what this module started, even if the pid was reused since.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from testsupport.processes import die_with_parent as dying_with_parent

# Servers this process started, kept so they are reaped (no zombies, no ResourceWarning).
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Running:
    name: str
    pid: int
    log: Path


def spawn(name: str, argv: Sequence[str], run_dir: Path, log_dir: Path, *,
          die_with_parent: bool) -> Running:
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
            preexec_fn=dying_with_parent() if die_with_parent else None)
    (run_dir / f"{name}.pid").write_text(f"{proc.pid}\n{Path(argv[0]).resolve()}\n")
    _children[proc.pid] = proc
    return Running(name=name, pid=proc.pid, log=log)


def alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        # Our own child: poll() reaps it, so it never lingers as a zombie.
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    # Started by another process (the CLI): its zombie is its new parent's to reap.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _ours(pid: int, binary: str) -> bool:
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    # A rebuilt binary shows as "<path> (deleted)" while the old process runs.
    return exe == binary or exe.startswith(binary + " ")


def running(run_dir: Path) -> dict[str, int]:
    """Name -> pid of every pidfile in run_dir whose process is still ours and alive."""
    found: dict[str, int] = {}
    for pidfile in sorted(run_dir.glob("*.pid")):
        lines = pidfile.read_text().split("\n")
        if len(lines) < 2 or not lines[0].isdigit():
            continue
        pid, binary = int(lines[0]), lines[1]
        if alive(pid) and _ours(pid, binary):
            found[pidfile.stem] = pid
    return found


def stop(run_dir: Path, name: str, *, grace: float = 20.0) -> bool:
    """SIGTERM the process group, SIGKILL it after `grace` seconds; True if it was running."""
    pidfile = run_dir / f"{name}.pid"
    pid = running(run_dir).get(name)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not alive(pid):
            break
    pidfile.unlink(missing_ok=True)
    return True
