"""Telemetry fixtures: a throwaway PostgreSQL cluster per session, a fresh store per test.

The cluster: initdb in a temp dir, a free loopback port. PostgreSQL refuses to run as
root, so under root the server runs as the `postgres` OS user (Debian's package creates
it) with the data directory owned by that user.
"""

from __future__ import annotations

import csv
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from ferry.telemetry.parsing.rows import TelemetryRow, column_positions, parse_record, record_of
from ferry.telemetry.storage.base import Store
from ferry.telemetry.storage.opening import store_for

SUPERUSER = "ferry"


def pg_bin() -> Path | None:
    if env := os.environ.get("FERRY_PG_BIN"):
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(cmd: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *cmd] if owner else cmd


@contextmanager
def cluster() -> Iterator[str]:
    """Start a cluster, yield its DSN (database `postgres`), stop it and delete it."""
    bindir = pg_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found: run `make postgres` (Debian)")
    owner = None
    top = Path(tempfile.mkdtemp(prefix="ferry-pg-"))
    if os.geteuid() == 0:
        owner = "postgres"
        pw = pwd.getpwnam(owner)
        os.chown(top, pw.pw_uid, pw.pw_gid)
    data, log = top / "data", top / "server.log"
    port = free_port()

    def run(*cmd: str) -> None:
        argv = _as_owner([str(bindir / cmd[0]), *cmd[1:]], owner)
        subprocess.run(argv, check=True, capture_output=True, text=True, cwd=top)

    try:
        run("initdb", "-D", str(data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--no-sync")
        opts = (
            f"-p {port} -k {top} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        )
        run("pg_ctl", "-D", str(data), "-l", str(log), "-o", opts, "-w", "start")
    except subprocess.CalledProcessError as e:
        text = log.read_text() if log.exists() else ""
        shutil.rmtree(top, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {e.stderr}\n{text}") from e
    try:
        yield f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
    finally:
        run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(top, ignore_errors=True)


ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """DSN of a throwaway cluster's `postgres` database."""
    with cluster() as dsn:
        yield dsn


async def fresh_database(postgres: str) -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(postgres)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return postgres.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=ENGINES)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'telemetry.db'}"
    return await fresh_database(request.getfixturevalue("postgres"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with store_for(store_url) as s:
        yield s


DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


@pytest.fixture(scope="session")
def sample_rows() -> list[TelemetryRow]:
    """The committed sample, parsed (every row of it is valid)."""
    with (DATA / "dcgm_sample.csv").open(newline="") as f:
        reader = csv.reader(f)
        pos = column_positions(next(reader))
        return [parse_record(record_of(fields, pos)) for fields in reader]


@pytest.fixture
async def pg_url(postgres: str) -> str:
    """A fresh, empty database on the session's cluster."""
    return await fresh_database(postgres)
