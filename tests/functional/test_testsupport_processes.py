"""Test servers never outlive the run: what a process started goes with it."""

from __future__ import annotations

import os
from pathlib import Path

from testsupport.processes import Process
from testsupport.waiting import eventually


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_stopping_a_process_whose_leader_exited_stops_what_it_started(tmp_path: Path) -> None:
    """A server that crashed leaves its children in its process group; stop() must reach
    them (it signalled the group only while the leader itself was alive)."""
    log = tmp_path / "out.log"
    proc = Process(["sh", "-c", "sleep 1000 & echo $!; exit 3"], log).start()
    child = int(eventually(lambda: log.read_text().strip() or None, "the child's pid"))
    eventually(lambda: proc.returncode() == 3, "the leader to exit")
    assert _running(child)
    try:
        proc.stop()
        eventually(lambda: not _running(child), "the leader's child to be stopped with it", 30)
    finally:
        if _running(child):
            os.kill(child, 9)
