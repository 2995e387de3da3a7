"""A failed commit makes a real broker fail-stop; 503 means nothing of that request happened.

Faults are real: the committer process's file-size limit is set to one byte
(RLIMIT_FSIZE through prlimit), so its next write to the WAL fails with EFBIG
as on a full disk; or the committer is killed alone. The broker must answer
503, start over by itself (the same process, re-executed) on what the store
holds, and be ready again once the fault is gone (its new committer has no
such limit: the disk freed), holding exactly what it answered as durable.
"""

from __future__ import annotations

import asyncio
import io
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from broker_api import Api
from fixtures.broker_process import BrokerProcess
from testsupport.ports import free_port
from testsupport.waiting import eventually_async

pytestmark = pytest.mark.functional

EXIT_WAIT_S = 60.0  # a liveness bound on a loaded machine, not a timing assertion
STARTED_OVER = "store lost: starting over from the store"


def committer_pid(broker: BrokerProcess) -> int:
    assert broker.proc is not None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == broker.proc.pid and b"ferry.broker.store.committer" in cmdline:
            return int(entry.name)
    raise AssertionError("the broker has no committer process")


def fill_disk(broker: BrokerProcess) -> None:
    """Every write of the committer beyond its first byte fails (EFBIG), as on a full disk."""
    resource.prlimit(committer_pid(broker), resource.RLIMIT_FSIZE, (1, 1))


async def started_over(api: Api, broker: BrokerProcess) -> None:
    """The broker replaced itself (same pid) and is ready again, by itself."""
    pid = broker.proc.pid if broker.proc is not None else None

    async def ready_again() -> bool:
        assert broker.alive, broker.logs()
        return STARTED_OVER in broker.logs() and await status_or_gone(api, "GET", "/readyz") == 200

    await eventually_async(ready_again, "the broker to start over and be ready", EXIT_WAIT_S)
    assert broker.proc is not None and broker.proc.pid == pid


async def status_or_gone(api: Api, method: str, path: str, body: object = None) -> int | None:
    """The status of an answer, None when the stopping broker no longer answers."""
    try:
        data = None if body is None else io.BytesIO(orjson.dumps(body))  # large: not bytes
        status, _ = await api.call(method, path, data=data,
                                   headers={"Content-Type": "application/json"})
    except aiohttp.ClientError:
        return None
    return status


async def test_a_publish_answered_503_is_never_delivered(broker: BrokerProcess) -> None:
    async with aiohttp.ClientSession() as s:
        api = Api(s, broker.url)
        await api.create("q", "g")
        (kept,) = await api.publish("q", {"body": "kept"})
        fill_disk(broker)
        status, doc = await api.call("POST", "/v1/queues/q/messages",
                                     {"messages": [{"body": "lost"}]})
        assert status == 503 and doc["error"]["code"] == "unavailable", doc
        # Until it exits, nothing it says may reflect what the store does not hold.
        status = await status_or_gone(api, "POST", "/v1/queues/q/groups/g/receive",
                                      {"consumer": "c"})
        assert status in (503, None)
        await started_over(api, broker)
        got = await api.receive("q", "g", max=10)
        assert [(m["id"], m["body"]) for m in got] == [(kept, "kept")]
        assert (await api.ok("GET", "/v1/queues/q"))["published_total"] == 1


async def test_an_ack_answered_503_never_takes_effect(broker: BrokerProcess) -> None:
    async with aiohttp.ClientSession() as s:
        api = Api(s, broker.url)
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


async def test_a_queue_whose_creation_answered_503_does_not_exist(broker: BrokerProcess) -> None:
    async with aiohttp.ClientSession() as s:
        api = Api(s, broker.url)
        await api.ok("PUT", "/v1/queues/before")
        fill_disk(broker)
        status, doc = await api.call("PUT", "/v1/queues/after")
        assert status == 503, doc
        assert await status_or_gone(api, "GET", "/v1/queues/after") in (503, None)
        await started_over(api, broker)
        names = [q["queue"] for q in (await api.ok("GET", "/v1/queues"))["queues"]]
        assert names == ["before"]


async def test_a_killed_committer_makes_the_broker_start_over(broker: BrokerProcess) -> None:
    """Not a broker that stays up with /healthz 200 and every write 503."""
    async with aiohttp.ClientSession() as s:
        api = Api(s, broker.url)
        await api.ok("PUT", "/v1/queues/q")
        os.kill(committer_pid(broker), signal.SIGKILL)
        status = await status_or_gone(api, "POST", "/v1/queues/q/messages",
                                      {"messages": [{"body": 1}]})
        assert status in (503, None)
        await started_over(api, broker)  # (health said failing meanwhile, briefly)
        await api.publish("q", {"body": 2})


def test_a_failed_restore_is_logged_and_fatal(tmp_path: Path) -> None:
    """A stored row the core cannot take (priority 99): exit 1, never a silent hang (nor a
    restart loop in place: it would fail again)."""
    data = tmp_path / "data"
    b = BrokerProcess(data, tmp_path / "broker.log")
    b.start()
    asyncio.run(_create(b.url))
    assert b.stop() == 0
    conn = sqlite3.connect(data / "ferry.db")
    with conn:
        (qid,) = conn.execute("SELECT id FROM queues").fetchone()
        conn.execute("INSERT INTO messages VALUES (?, 99, 0, 0, NULL, NULL, '{}')",
                     ((qid << 40) | 1,))
        conn.execute("UPDATE queues SET next_seq = 2")
    conn.close()
    log = tmp_path / "again.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ferry.broker", "--data-dir", str(data), "--host",
             "127.0.0.1", "--port", str(free_port())], stdout=out, stderr=out,
        )
    try:
        code = proc.wait(EXIT_WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert code == 1, text
    assert "ferry-broker-restore failed" in text


async def _create(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        api = Api(s, url)
        await api.create("q", "g")




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
        async with aiohttp.ClientSession() as s:
            api = Api(s, broker.url)
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
