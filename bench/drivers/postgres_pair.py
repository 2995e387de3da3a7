"""A PostgreSQL primary and its synchronous streaming standby on loopback, for `ferry-pg`.

Debian's server binaries (`make postgres`), both in the foreground as processes of the
harness. Unlike the test fixtures, fsync stays on: a COMMIT returns once the primary
fsynced its WAL and the standby (synchronous_standby_names, synchronous_commit = on)
flushed it too, which is what a PostgreSQL-backed queue promises its users.
Under root the servers run as the `postgres` OS user that Debian's package creates.
With `standby=False` only the primary runs (fsync on, no replication wait): the
telemetry store of the `pipeline` scenario.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
from pathlib import Path

import asyncpg
from testsupport.ports import free_port

from bench.processes import ServerProcess, wait_until
from ferrydemo.postgres import SUPERUSER, bindir

PRIMARY = ("wal_level=replica", "max_wal_senders=4", "synchronous_standby_names=*",
           "synchronous_commit=on")


class PgPair:
    def __init__(self, top: Path, *, standby: bool = True) -> None:
        self.top = top
        self.standby = standby
        self.bins = bindir()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.ports = free_port(), free_port()

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        """Both hosts: libpq picks whichever is the read-write primary."""
        if not self.standby:
            return f"postgresql://{SUPERUSER}@127.0.0.1:{self.ports[0]}/{database}"
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"postgresql://{SUPERUSER}@{hosts}/{database}?target_session_attrs=read-write"

    def _run(self, *argv: str) -> None:
        subprocess.run([str(self.bins / argv[0]), *argv[1:]], check=True, capture_output=True,
                       text=True, user=self.user, cwd=self.top)

    def _server(self, name: str, port: int, *settings: str) -> ServerProcess:
        opts = [f"-c{s}" for s in ("listen_addresses=127.0.0.1", *settings)]
        return ServerProcess(
            name, [str(self.bins / "postgres"), "-D", str(self.top / name), "-p", str(port),
                   "-k", str(self.top), *opts],
            self.top / f"{name}.log", user=self.user, cwd=self.top)

    async def start(self, started: list[ServerProcess]) -> None:
        """initdb and pg_basebackup on first start; both servers, once they take clients.
        Each server joins `started` as it starts, so the caller stops what did start even
        when the other does not."""
        fresh = not (self.top / "primary").exists()
        if fresh:
            self.top.mkdir(parents=True, exist_ok=True)
            if self.user:  # the servers' user must reach their folder
                for d in (self.top.parent.parent, self.top.parent):
                    d.chmod(d.stat().st_mode | 0o011)
                pw = pwd.getpwnam(self.user)
                os.chown(self.top, pw.pw_uid, pw.pw_gid)
            await asyncio.to_thread(self._run, "initdb", "-D", str(self.top / "primary"),
                                    "-A", "trust", "-U", SUPERUSER, "-E", "UTF8")
        primary = self._server("primary", self.ports[0], *(PRIMARY if self.standby else ()))
        primary.start()
        started.append(primary)
        await self._ready(primary, self.ports[0])
        if not self.standby:
            return
        if fresh:
            await asyncio.to_thread(
                self._run, "pg_basebackup", "-D", str(self.top / "standby"), "-h", "127.0.0.1",
                "-p", str(self.ports[0]), "-U", SUPERUSER, "-R", "-X", "stream")
        standby = self._server("standby", self.ports[1], "synchronous_standby_names=")
        standby.start()
        started.append(standby)
        await self._ready(standby, self.ports[1])

    @staticmethod
    async def _ready(server: ServerProcess, port: int) -> None:
        async def answers() -> bool:
            conn = await asyncpg.connect(f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres",
                                         timeout=2)
            await conn.close()
            return True

        await wait_until(answers, server, 120, "accepting connections")
