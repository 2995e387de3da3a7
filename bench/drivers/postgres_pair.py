"""A PostgreSQL primary and its synchronous streaming standby on loopback, for `ferry-pg`.

Debian's server binaries (testsupport.postgres), both in the foreground as processes of
the harness. Unlike the test fixtures, fsync stays on (`durable`): a COMMIT returns once
the primary fsynced its WAL and the standby (synchronous_standby_names, synchronous_commit
= on) flushed it too, which is what a PostgreSQL-backed queue promises its users.
With `standby=False` only the primary runs (fsync on, no replication wait): the
telemetry store of the `pipeline` scenario.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from testsupport.postgres import SUPERUSER, Server

from bench.processes import ServerProcess, wait_until

PRIMARY = ("wal_level=replica", "max_wal_senders=4", "synchronous_standby_names=*",
           "synchronous_commit=on")


class PgPair:
    def __init__(self, top: Path, *, standby: bool = True) -> None:
        self.top = top
        self.standby = standby
        self.fresh = not (top / "primary").exists()
        self.servers = (Server(top, "primary", durable=True),
                        Server(top, "standby", durable=True))

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        """Both hosts: libpq picks whichever is the read-write primary."""
        if not self.standby:
            return self.servers[0].dsn(database)
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.servers)
        return f"postgresql://{SUPERUSER}@{hosts}/{database}?target_session_attrs=read-write"

    async def start(self, started: list[ServerProcess]) -> None:
        """initdb and pg_basebackup on first start; both servers, once they take clients.
        Each server joins `started` as it starts, so the caller stops what did start even
        when the other does not."""
        primary, standby = self.servers
        if self.fresh:
            if primary.user:  # the servers' user must reach their folder
                for d in (self.top.parent.parent, self.top.parent):
                    d.chmod(d.stat().st_mode | 0o011)
            await asyncio.to_thread(primary.initdb)
        await self._start(started, primary, *(PRIMARY if self.standby else ()))
        if not self.standby:
            return
        if self.fresh:
            await asyncio.to_thread(
                primary.run, "pg_basebackup", "-D", str(standby.data), "-h", "127.0.0.1",
                "-p", str(primary.port), "-U", SUPERUSER, "-R", "-X", "stream")
        await self._start(started, standby, "synchronous_standby_names=")

    async def _start(self, started: list[ServerProcess], server: Server, *settings: str) -> None:
        process = ServerProcess(server.data.name, server.argv(*settings), server.log,
                                user=server.user, cwd=self.top)
        process.start()
        started.append(process)
        await wait_until(lambda: asyncio.to_thread(server.accepts), process, 120,
                         "accepting connections")
