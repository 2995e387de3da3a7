"""PostgreSQL servers from Debian's binaries (`make postgres`) on loopback: for the tests
(daemonized by pg_ctl, so a test can SIGKILL or promote one), the demo and the benchmark
(in the foreground, as children of their supervisors).

Throwaway servers run with fsync off; `durable=True` keeps PostgreSQL's defaults (fsync
on), which is what a PostgreSQL-backed queue promises its users and what the benchmark
measures. PostgreSQL refuses to run as root: under root a server runs as the `postgres`
OS user (Debian's package creates it), its folder owned by that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
from contextlib import suppress
from pathlib import Path

from testsupport.ports import lasting_port
from testsupport.processes import children

SUPERUSER = "ferry"


class PostgresError(RuntimeError):
    """The server binaries are missing, or one of them failed (its output in the message)."""


def bindir() -> Path:
    """The folder of the newest installed server binaries (FERRY_PG_BIN overrides)."""
    if env := os.environ.get("FERRY_PG_BIN"):
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    if initdb := shutil.which("initdb"):
        return Path(initdb).parent
    raise PostgresError("PostgreSQL server binaries not found: run `make postgres` (Debian: "
                        "apt-get install postgresql), or set FERRY_PG_BIN to their folder")


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


class Server:
    """One server: its data folder `name`, log and socket in `top` (created if missing)."""

    def __init__(self, top: Path, name: str = "data", port: int | None = None,
                 durable: bool = False) -> None:
        self.bins = bindir()
        self.top, self.data, self.log = top, top / name, top / f"{name}.log"
        self.port = port or lasting_port()
        self.durable = durable
        self.user = "postgres" if os.geteuid() == 0 else None
        top.mkdir(parents=True, exist_ok=True)
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(top, pw.pw_uid, pw.pw_gid)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def run(self, *cmd: str) -> None:
        """One of the server binaries, as the server's user."""
        try:
            subprocess.run([str(self.bins / cmd[0]), *cmd[1:]], check=True, capture_output=True,
                           text=True, user=self.user, cwd=self.top)
        except subprocess.CalledProcessError as e:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise PostgresError(f"{cmd[0]} failed: {e.stderr}\n{log}") from e

    def initdb(self) -> None:
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8",
                 *(() if self.durable else ("--no-sync",)))

    def settings(self, *extra: str) -> list[str]:
        throwaway = () if self.durable else ("fsync=off", "max_connections=200")
        return ["listen_addresses=127.0.0.1", *throwaway, *extra]

    def argv(self, *settings: str) -> list[str]:
        """The command line of the server in the foreground."""
        return [str(self.bins / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-k", str(self.top), *(f"-c{s}" for s in self.settings(*settings))]

    def accepts(self) -> bool:
        """Whether it accepts connections now."""
        return subprocess.run([str(self.bins / "pg_isready"), "-h", "127.0.0.1",
                               "-p", str(self.port)], capture_output=True).returncode == 0

    def start(self, *settings: str) -> None:
        """Daemonized by pg_ctl, once it accepts connections (`settings` go through a shell)."""
        opts = [f"-p {self.port}", f"-k {self.top}", *(f"-c {s}" for s in self.settings(*settings))]
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", " ".join(opts),
                 "-w", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def kill(self) -> None:
        """SIGKILL to the postmaster and every backend: what a crashed host looks like."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        for p in (pid, *children(pid)):
            with suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        (self.data / "postmaster.pid").unlink(missing_ok=True)

    def promote(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-w", "promote")

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.top, ignore_errors=True)
