"""A throwaway PostgreSQL for the demo's telemetry store, supervised like every other process.

`postgres` runs in the foreground under the supervisor (not daemonized by pg_ctl), so it
stops with the demo, and dies with it if the demo is killed (testsupport.postgres).
"""

from __future__ import annotations

from pathlib import Path

from testsupport.postgres import SUPERUSER, PostgresError, Server
from testsupport.waiting import GaveUpError, eventually

from ferrydemo.supervising import Supervisor

DATABASE = "telemetry"


def start(supervisor: Supervisor, top: Path, port: int) -> str:
    """initdb in `top` (a fresh folder the caller removes), run the server on
    127.0.0.1:`port`; the DSN of database `telemetry`.

    Under root `top` should be a folder of its own in /tmp (the postgres user must be
    able to reach it, which a 0700 parent such as pytest's tmp_path forbids)."""
    server = Server(top, port=port)
    server.initdb()
    child = supervisor.start("postgres", server.argv(), user=server.user, cwd=top)

    def accepts() -> bool:
        supervisor.check()  # a server that died fails at once
        return server.accepts()

    try:
        eventually(accepts, "PostgreSQL", 60)
    except GaveUpError:
        raise PostgresError(f"PostgreSQL did not become ready; see {child.log}") from None
    server.run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, DATABASE)
    return server.dsn(DATABASE)
