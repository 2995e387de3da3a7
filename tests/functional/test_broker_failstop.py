"""A failed commit makes a real broker fail-stop; 503 means nothing of that request happened.

Faults are real: the committer process's file-size limit is set to one byte
(RLIMIT_FSIZE through prlimit), so its next write to the WAL fails with EFBIG
as on a full disk; or the committer is killed alone. The broker must answer
503, start over by itself (the same process, re-executed) on what the store
holds, and be ready again once the fault is gone (its new committer has no
such limit: the disk freed), holding exactly what it answered as durable.

A commit whose outcome is unknown (the committer killed holding it; PostgreSQL's
backend terminated while its COMMIT waits for a synchronous standby) is answered
500 `outcome_unknown` over HTTP and WebSocket alike: never 503, never silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from broker_api import Api
from fixtures.broker_process import BrokerProcess
from fixtures.postgres import cluster
from testsupport.ports import free_port
from testsupport.processes import children
from testsupport.waiting import eventually_async

from ferry.broker import models as m

pytestmark = pytest.mark.functional

EXIT_WAIT_S = 60.0  # a liveness bound on a loaded machine, not a timing assertion
STARTED_OVER = "store lost: starting over from the store"


def committer_pid(broker: BrokerProcess) -> int:
    for pid in children(broker.pid):
        with contextlib.suppress(OSError):
            if b"ferry.broker.store.committer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    raise AssertionError("the broker has no committer process")


def fill_disk(broker: BrokerProcess) -> None:
    """Every write of the committer beyond its first byte fails (EFBIG), as on a full disk."""
    resource.prlimit(committer_pid(broker), resource.RLIMIT_FSIZE, (1, 1))


async def started_over(api: Api, broker: BrokerProcess) -> None:
    """The broker replaced itself (same pid), is ready again by itself, and has read every
    stored message back in (it serves already while it does)."""
    pid = broker.proc.pid if broker.proc is not None else None

    async def ready_again() -> bool:
        assert broker.alive(), broker.logs()
        if STARTED_OVER not in broker.logs():
            return False
        status, doc = await answer_or_gone(api, "GET", "/readyz")
        return status == 200 and doc["restoring"] is False

    await eventually_async(ready_again, "the broker to start over and be ready", EXIT_WAIT_S)
    assert broker.proc is not None and broker.proc.pid == pid


async def answer_or_gone(api: Api, method: str, path: str, body: object = None
                         ) -> tuple[int | None, Any]:
    """An answer's status and document, None when the stopping broker no longer answers."""
    try:
        data = None if body is None else io.BytesIO(orjson.dumps(body))  # large: not bytes
        return await api.call(method, path, data=data,
                              headers={"Content-Type": "application/json"})
    except aiohttp.ClientError:
        return None, None


async def status_or_gone(api: Api, method: str, path: str, body: object = None) -> int | None:
    return (await answer_or_gone(api, method, path, body))[0]


async def meanwhile(api: Api, broker: BrokerProcess, method: str, path: str,
                    body: object = None) -> tuple[int | None, Any]:
    """An answer while the broker fails: 503 or none until it has started over.

    It starts over half a second after the failure, which a loaded machine may spend between
    two requests: a later answer comes from the store and the caller checks it says only
    what the store holds.
    """
    status, doc = await answer_or_gone(api, method, path, body)
    assert status in (503, None) or STARTED_OVER in broker.logs(), (status, doc)
    return status, doc


async def test_a_publish_answered_503_is_never_delivered(broker: BrokerProcess, api: Api) -> None:
    await api.create("q", "g", "probe")
    (kept,) = await api.publish("q", {"body": "kept"})
    fill_disk(broker)
    await api.refused("POST", "/v1/queues/q/messages", {"messages": [{"body": "lost"}]}, 503,
                      "unavailable")
    # Nothing it says may reflect what the store does not hold.
    status, doc = await meanwhile(api, broker, "POST", "/v1/queues/q/groups/probe/receive",
                                  {"consumer": "c", "max": 10})
    if status not in (503, None):
        assert [m["body"] for m in doc["messages"]] == ["kept"], doc
    await started_over(api, broker)
    got = await api.receive("q", "g", max=10)
    assert [(m["id"], m["body"]) for m in got] == [(kept, "kept")]
    assert (await api.ok("GET", "/v1/queues/q"))["published_total"] == 1


async def test_an_ack_answered_503_never_takes_effect(broker: BrokerProcess, api: Api) -> None:
    await api.create("q", "g")
    ids = await api.publish("q", *[{"body": i} for i in range(5)])
    got = await api.receive("q", "g", max=5)
    fill_disk(broker)
    status, doc = await api.call("POST", "/v1/queues/q/groups/g/ack",
                                 {"receipts": [m["receipt"] for m in got]})
    assert status == 503, doc
    await started_over(api, broker)
    again = await api.receive("q", "g", max=10)
    assert sorted(m["id"] for m in again) == sorted(ids)  # every one comes back
    stats = await api.ok("GET", "/v1/queues/q/groups/g")
    assert stats["acked_total"] == 0


async def test_a_queue_whose_creation_answered_503_does_not_exist(
        broker: BrokerProcess, api: Api) -> None:
    await api.ok("PUT", "/v1/queues/before")
    fill_disk(broker)
    status, doc = await api.call("PUT", "/v1/queues/after")
    assert status == 503, doc
    status, doc = await meanwhile(api, broker, "GET", "/v1/queues/after")
    assert status in (503, 404, None), doc
    await started_over(api, broker)
    names = [q["queue"] for q in (await api.ok("GET", "/v1/queues"))["queues"]]
    assert names == ["before"]


async def test_a_killed_committer_makes_the_broker_start_over(
        broker: BrokerProcess, api: Api) -> None:
    """Not a broker that stays up with /healthz 200 and every write 503."""
    await api.ok("PUT", "/v1/queues/q")
    os.kill(committer_pid(broker), signal.SIGKILL)
    status = await status_or_gone(api, "POST", "/v1/queues/q/messages",
                                  {"messages": [{"body": 1}]})
    # 500 outcome_unknown if its frame reached the pipe before the committer's exit
    # was seen (the broker cannot tell whether it was read and committed).
    assert status in (500, 503, None)
    await started_over(api, broker)  # (health said failing meanwhile, briefly)
    await api.publish("q", {"body": 2})


async def test_a_failed_restore_is_logged_and_fatal(broker: BrokerProcess, api: Api) -> None:
    """A stored row the core cannot take (priority 99): exit 1, never a silent hang (nor a
    restart loop in place: it would fail again)."""
    await api.create("q", "g")
    assert broker.stop() == 0
    data = broker.data_dir
    conn = sqlite3.connect(data / "ferry.db")
    with conn:
        (qid,) = conn.execute("SELECT id FROM queues").fetchone()
        conn.execute("INSERT INTO messages VALUES (?, 99, 0, 0, NULL, NULL, '{}')",
                     ((qid << 40) | 1,))
        conn.execute("UPDATE queues SET next_seq = 2")
    conn.close()
    again = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "ferry.broker", "--data-dir", str(data), "--host",
                         "127.0.0.1", "--port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=EXIT_WAIT_S)
    assert again.returncode == 1, again.stdout
    assert "ferry-broker-restore failed" in again.stdout


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs (root only): a disk that really fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of the disk; deleting the file frees them again."""
    filler = disk / "filler"
    with filler.open("wb") as f:
        chunk = b"\0" * (1 << 16)
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    return filler


async def test_a_full_disk_fails_writes_and_the_broker_recovers_by_itself(
    small_disk: Path, tmp_path: Path,
) -> None:
    broker = BrokerProcess(small_disk / "data", tmp_path / "broker.log")
    broker.start()
    try:
        async with Api.connect(broker.url) as api:
            await api.create("q", "g")
            (kept,) = await api.publish("q", {"body": "kept"})
            filler = fill(small_disk)
            big = {"body": "x" * 900_000}
            status = await status_or_gone(api, "POST", "/v1/queues/q/messages",
                                          {"messages": [big, big]})
            assert status in (503, None)
            await started_over(api, broker)  # the disk is still full: reads are served
            filler.unlink()  # the disk freed: writes work again, nothing else needed
            await api.publish("q", {"body": "after"})
            got = await api.receive("q", "g", max=10)
            assert [m["body"] for m in got] == ["kept", "after"]
            assert got[0]["id"] == kept
    finally:
        broker.kill()


TRANSPORTS = ["http", "websocket"]


async def publish_answer(api: Api, transport: str, dedup_id: str) -> tuple[int, str | None]:
    """Publish one message; the answer's status (WebSocket: its code's) and error code."""
    message = {"body": dedup_id, "dedup_id": dedup_id}
    if transport == "http":
        status, doc = await api.call("POST", "/v1/queues/q/messages", {"messages": [message]})
        return status, doc["error"]["code"] if status >= 400 else None
    async with api.session.ws_connect(api.url + "/v1/ws") as ws:
        await ws.send_str(orjson.dumps(
            {"op": "publish", "seq": 1, "queue": "q", "messages": [message]}).decode())
        reply = orjson.loads((await ws.receive()).data)
    assert reply["op"] == "reply" and reply["seq"] == 1, reply
    if "error" not in reply or reply["error"] is None:
        return 200, None
    code = reply["error"]["code"]
    return m.STATUS_OF_CODE[m.ErrorCode(code)], code


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_commit_lost_with_its_committer_is_answered_outcome_unknown(
    broker: BrokerProcess, api: Api, transport: str,
) -> None:
    await api.create("q", "g")
    pid = committer_pid(broker)
    os.kill(pid, signal.SIGSTOP)  # it holds the publish's frame, unanswered
    try:
        # Stopped before the publish is sent: a committer not yet scheduled when the frame
        # arrived read it first and stopped after (seen under load: the wait below gave up).
        async def committer_stopped() -> bool:
            return stopped(pid)

        await eventually_async(committer_stopped, "the committer to stop")
        answer = asyncio.create_task(publish_answer(api, transport, "d1"))

        async def sent() -> bool:
            if answer.done():  # answered without reaching the committer: say how
                raise AssertionError(f"answered before the committer got the publish: "
                                     f"{answer.result()!r}\n{broker.logs()}")
            return committer_has_input(pid)

        await eventually_async(sent, "the publish to reach the committer")
    finally:  # never left stopped: a stopped committer outlives its broker (it did once)
        os.kill(pid, signal.SIGKILL)
    assert await answer == (500, "outcome_unknown")
    await started_over(api, broker)
    # The retry with its dedup id is what tells: here the committer never read it.
    (retried,) = await api.publish("q", {"body": "d1", "dedup_id": "d1"})
    got = await api.receive("q", "g", max=10)
    assert [(x["id"], x["body"]) for x in got] == [(retried, "d1")]


def stopped(pid: int) -> bool:
    """The process is stopped (SIGSTOP has taken effect, not only been sent)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def committer_has_input(pid: int) -> bool:
    """The stopped committer's stdin pipe holds bytes (the broker sent it a frame)."""
    with Path(f"/proc/{pid}/fd/0").open("rb", buffering=0) as pipe:
        buf = bytearray(4)
        fcntl.ioctl(pipe.fileno(), termios.FIONREAD, buf)
    return int.from_bytes(buf, "little") > 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_commit_cut_off_in_postgres_is_answered_outcome_unknown(
    tmp_path: Path, transport: str,
) -> None:
    """pg_terminate_backend while COMMIT waits for a synchronous standby: PostgreSQL has
    committed it locally, so a 503 (nothing happened) would be a lie."""
    with cluster() as dsn:
        broker = BrokerProcess(tmp_path / "data", tmp_path / "broker.log",
                               "--postgres", dsn, "--postgres-schema", "q")
        broker.start()
        admin = await asyncpg.connect(dsn)
        try:
            async with Api.connect(broker.url) as api:
                await api.create("q", "g")
                # A synchronous standby that never comes: every COMMIT from now on waits.
                await admin.execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
                await admin.execute("SELECT pg_reload_conf()")
                answer, waiting = await a_commit_waiting_for_sync_rep(api, admin, transport)
                await admin.execute("SELECT pg_terminate_backend($1)", waiting)
                await admin.execute("ALTER SYSTEM RESET synchronous_standby_names")
                await admin.execute("SELECT pg_reload_conf()")
                assert await answer == (500, "outcome_unknown")
                await started_over(api, broker)
                doc = await api.ok("GET", "/v1/queues/q")
                committed = doc["published_total"]
                assert committed >= 1  # the cut-off publish did commit (locally)
                ids = await api.publish("q", *[{"body": f"d{i}", "dedup_id": f"d{i}"}
                                               for i in range(committed)])
                got = await api.receive("q", "g", max=100)
                assert sorted(x["id"] for x in got) == sorted(ids)  # each once, none again
        finally:
            await admin.close()
            broker.kill()


async def a_commit_waiting_for_sync_rep(
    api: Api, admin: asyncpg.Connection, transport: str,
) -> tuple[asyncio.Task[tuple[int, str | None]], int]:
    """A publish whose COMMIT waits for the standby, and its backend's pid. Publishes made
    before the reload reached the server commit at once; each is answered and counted."""
    n = 0
    answer = asyncio.create_task(publish_answer(api, transport, f"d{n}"))

    async def waiting() -> int | None:
        nonlocal n, answer
        pid = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep' LIMIT 1")
        if pid is None and answer.done():
            assert await answer == (200, None)
            n += 1
            answer = asyncio.create_task(publish_answer(api, transport, f"d{n}"))
        return pid

    pid = await eventually_async(waiting, "a COMMIT to wait for the synchronous standby")
    return answer, pid
