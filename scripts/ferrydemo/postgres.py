"""A throwaway PostgreSQL for the demo's telemetry store, supervised like every other process.

`postgres` runs in the foreground under the supervisor (not daemonized by pg_ctl), so it
stops with the demo, and dies with it if the demo is killed. PostgreSQL refuses to run as
root: under root it runs as the `postgres` OS user that Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from ferrydemo.supervising import Supervisor

SUPERUSER = "ferry"
DATABASE = "telemetry"


class PostgresMissingError(RuntimeError):
    pass


def bindir() -> Path:
    if env := os.environ.get("FERRY_PG_BIN"):
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    if exe := shutil.which("postgres"):
        return Path(exe).parent
    raise PostgresMissingError("PostgreSQL server binaries not found (Debian: apt-get install "
                          "postgresql; or set FERRY_PG_BIN to the folder holding `postgres`)")


def start(supervisor: Supervisor, top: Path, port: int) -> str:
    """initdb in `top` (a fresh folder the caller removes), run the server on
    127.0.0.1:`port`; the DSN of database `telemetry`.

    Under root `top` should be a folder of its own in /tmp (the postgres user must be
    able to reach it, which a 0700 parent such as pytest's tmp_path forbids)."""
    bins = bindir()
    user = "postgres" if os.geteuid() == 0 else None
    top.mkdir(parents=True, exist_ok=True)
    if user:
        pw = pwd.getpwnam(user)
        os.chown(top, pw.pw_uid, pw.pw_gid)
    data = top / "data"
    subprocess.run([str(bins / "initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER,
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True, text=True,
                   user=user, cwd=top)
    child = supervisor.start("postgres", [
        str(bins / "postgres"), "-D", str(data), "-p", str(port), "-k", str(top),
        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200",
    ], user=user, cwd=top)
    deadline = time.monotonic() + 60
    while True:
        ready = subprocess.run([str(bins / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                               capture_output=True)
        if ready.returncode == 0:
            break
        supervisor.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not become ready; see {child.log}")
        time.sleep(0.2)
    subprocess.run([str(bins / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER,
                    DATABASE], check=True, capture_output=True, text=True)
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"
