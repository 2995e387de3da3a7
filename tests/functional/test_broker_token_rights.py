"""Scoped tokens against a real broker: rights (403), queue globs, rates (429), the file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from broker_api import Api
from fixtures.broker_process import BrokerProcess
from testsupport.waiting import eventually_async

from ferry.broker.client import BrokerClient, Forbidden, RateLimited
from ferry.broker.models import ErrorCode, OutgoingMessage

pytestmark = pytest.mark.functional

FERRY = shutil.which("ferry", path=str(Path(sys.executable).parent)) or "ferry"
ADMIN = "adm1n-old-style-token"
PUBLISHER = "pub-0rders-token"
CONSUMER = "c0nsumer-token"
SLOW = "sl0w-token"
SLOW_PUBLISHER = "sl0w-publ1sher-token"
TOKENS = (ADMIN, PUBLISHER, CONSUMER, SLOW, SLOW_PUBLISHER)
TOKEN_FILE = f"""# the original format: one admin token
{ADMIN}
{PUBLISHER} publish,read queues=orders-*
{CONSUMER} consume queues=orders-eu
{SLOW} read rate=2/s
{SLOW_PUBLISHER} publish rate=2/s
"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def scoped(broker_factory: Callable[..., BrokerProcess], tmp_path: Path) -> BrokerProcess:
    path = tmp_path / "tokens"
    path.write_text(TOKEN_FILE)
    return broker_factory("--token-file", str(path), "--log-level", "debug")


async def test_rights_and_globs_decide_what_a_token_may_do(scoped: BrokerProcess) -> None:
    bodies: list[str] = []
    refused = 0
    async with Api.connect(scoped.url) as api:

        async def call(token: str, method: str, path: str, body: Any = None) -> int:
            nonlocal refused
            status, doc = await api.call(method, path, body, headers=bearer(token))
            refused += status == 403
            bodies.append(json.dumps(doc))
            if status >= 400:
                assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message"}
            if status == 403:
                assert doc["error"]["code"] == "forbidden"
            return status

        for q in ("orders-eu", "billing"):
            assert await call(ADMIN, "PUT", f"/v1/queues/{q}", {}) == 201
            assert await call(ADMIN, "PUT", f"/v1/queues/{q}/groups/w", {}) == 201
        one = {"messages": [{"body": 1}]}
        receive = {"consumer": "c", "max": 1, "wait_ms": 0}
        # publish,read on orders-*: publishes and reads there, nothing else anywhere
        assert await call(PUBLISHER, "POST", "/v1/queues/orders-eu/messages", one) == 200
        assert await call(PUBLISHER, "POST", "/v1/queues/billing/messages", one) == 403
        assert await call(PUBLISHER, "POST", "/v1/queues/orders-eu/groups/w/receive",
                          receive) == 403
        assert await call(PUBLISHER, "GET", "/v1/queues/orders-eu/messages") == 200
        assert await call(PUBLISHER, "GET",  # the SSE stream: consume
                          "/v1/queues/orders-eu/groups/w/stream?consumer=c") == 403
        assert await call(PUBLISHER, "PUT", "/v1/queues/orders-new", {}) == 403
        assert await call(PUBLISHER, "POST", "/v1/queues/orders-eu/purge") == 403
        status, listed = await api.call("GET", "/v1/queues", headers=bearer(PUBLISHER))
        assert status == 200 and [q["queue"] for q in listed["queues"]] == ["orders-eu"]
        # consume on orders-eu: receives and acks there, cannot publish or browse
        status, got = await api.call("POST", "/v1/queues/orders-eu/groups/w/receive", receive,
                                     headers=bearer(CONSUMER))
        assert status == 200 and len(got["messages"]) == 1
        assert await call(CONSUMER, "POST", "/v1/queues/orders-eu/groups/w/ack",
                          {"receipts": [got["messages"][0]["receipt"]]}) == 200
        assert await call(CONSUMER, "GET", "/v1/queues/orders-eu/groups/w") == 200  # stats
        assert await call(CONSUMER, "POST", "/v1/queues/orders-eu/messages", one) == 403
        assert await call(CONSUMER, "GET", "/v1/queues/orders-eu/messages") == 403
        assert await call(CONSUMER, "POST", "/v1/queues/billing/groups/w/receive",
                          receive) == 403
        assert await call(CONSUMER, "GET", "/metrics") == 200  # any known token
        status, text = await api.call("GET", "/metrics", headers=bearer(ADMIN))
    assert f'ferry_auth_refusals_total{{reason="forbidden"}} {refused}.0' in text.splitlines()
    assert not [t for t in TOKENS if any(t in b for b in bodies)]
    assert_no_token_logged(scoped)


async def test_a_websocket_frame_outside_the_rights_is_refused_and_the_socket_lives(
    scoped: BrokerProcess,
) -> None:
    async with Api.connect(scoped.url) as api:
        await api.call("PUT", "/v1/queues/orders-eu", {}, headers=bearer(ADMIN))
        await api.call("PUT", "/v1/queues/orders-eu/groups/w", {}, headers=bearer(ADMIN))
        async with api.session.ws_connect(scoped.url + "/v1/ws", headers=bearer(PUBLISHER)) as ws:
            frames = [
                {"op": "subscribe", "seq": 1, "queue": "orders-eu", "group": "w",
                 "consumer": "c"},
                {"op": "purge", "seq": 2, "queue": "orders-eu"},
                {"op": "publish", "seq": 3, "queue": "billing", "messages": [{"body": 1}]},
                {"op": "publish", "seq": 4, "queue": "orders-eu", "messages": [{"body": 1}]},
                {"op": "browse", "seq": 5, "queue": "orders-eu"},
            ]
            for frame in frames:
                await ws.send_str(json.dumps(frame))
            replies: dict[int, Any] = {}
            while len(replies) < len(frames):
                reply = json.loads((await ws.receive(timeout=60)).data)
                replies[reply["seq"]] = reply
    for seq in (1, 2, 3):
        assert replies[seq]["error"]["code"] == "forbidden", replies[seq]
        assert PUBLISHER not in replies[seq]["error"]["message"]
    assert len(replies[4]["ids"]) == 1 and "messages" in replies[5]["page"]
    assert_no_token_logged(scoped)


@pytest.mark.parametrize("websocket", [False, True], ids=["http", "websocket"])
async def test_the_client_raises_forbidden(scoped: BrokerProcess, websocket: bool) -> None:
    async with BrokerClient(scoped.url, token=ADMIN) as admin:
        await admin.put_queue("orders-eu")
        await admin.put_group("orders-eu", "w")
    async with BrokerClient(scoped.url, token=PUBLISHER, websocket=websocket) as client:
        assert len(await client.publish("orders-eu", [OutgoingMessage(body=1)])) == 1
        with pytest.raises(Forbidden) as refused:
            await client.publish("billing", [OutgoingMessage(body=1)])
        assert (refused.value.status, refused.value.code) == (403, ErrorCode.FORBIDDEN)
        with pytest.raises(Forbidden):
            await client.put_queue("orders-us")


async def test_over_its_rate_a_token_gets_429_then_recovers(scoped: BrokerProcess) -> None:
    async with Api.connect(scoped.url) as api:
        statuses = []
        retry = None
        for _ in range(20):  # a burst of 2 per second: most of 20 back-to-back are refused
            async with api.session.get(scoped.url + "/v1/queues", headers=bearer(SLOW)) as r:
                statuses.append(r.status)
                if r.status == 429:
                    doc = await r.json()
                    assert doc["error"]["code"] == "rate_limited"
                    retry = r.headers["Retry-After"]
        assert 200 in statuses and 429 in statuses and retry == "1"
        # Other tokens are not limited by it.
        assert (await api.call("GET", "/v1/queues", headers=bearer(ADMIN)))[0] == 200

        async def recovered() -> bool:
            return (await api.call("GET", "/v1/queues", headers=bearer(SLOW)))[0] == 200

        await eventually_async(recovered, "the slow token's bucket to refill", patience=60)
        _, text = await api.call("GET", "/metrics", headers=bearer(ADMIN))
    (line,) = [x for x in text.splitlines()
               if x.startswith('ferry_auth_refusals_total{reason="rate_limited"}')]
    assert float(line.split()[-1]) >= 1
    async with BrokerClient(scoped.url, token=SLOW, retries=0) as client:
        with pytest.raises(RateLimited) as limited:
            for _ in range(20):
                await client.list_queues()
    assert limited.value.status == 429 and limited.value.retry_after == 1.0


async def test_over_its_rate_a_websocket_frame_is_told_when_to_come_back(
    scoped: BrokerProcess,
) -> None:
    """The rate_limited reply carries retry_after_ms: HTTP's Retry-After (1 s: a 2/s
    bucket refills one request within 0.5 s, rounded up to whole seconds), in ms."""
    async with Api.connect(scoped.url) as api:
        await api.call("PUT", "/v1/queues/slow", {}, headers=bearer(ADMIN))
        async with api.session.ws_connect(scoped.url + "/v1/ws", headers=bearer(SLOW)) as ws:
            for seq in range(1, 21):  # a burst of 2 per second: most of 20 are refused
                await ws.send_str(json.dumps({"op": "browse", "seq": seq, "queue": "slow"}))
            replies: dict[int, Any] = {}
            while len(replies) < 20:
                reply = json.loads((await ws.receive(timeout=60)).data)
                replies[reply["seq"]] = reply
    limited = [r["error"] for r in replies.values() if "error" in r]
    assert limited and len(limited) < 20
    for error in limited:
        assert error["code"] == "rate_limited" and "retry in" in error["message"]
        assert error["retry_after_ms"] == 1000, error
    assert all("page" in r for r in replies.values() if "error" not in r)


@pytest.mark.parametrize("websocket", [False, True], ids=["http", "websocket"])
async def test_the_client_raises_rate_limited_with_retry_after(
    scoped: BrokerProcess, websocket: bool
) -> None:
    async with BrokerClient(scoped.url, token=ADMIN) as admin:
        await admin.put_queue("slow")
    async with BrokerClient(scoped.url, token=SLOW_PUBLISHER, retries=0,
                            websocket=websocket) as client:
        with pytest.raises(RateLimited) as limited:
            for _ in range(20):  # the first opens the WebSocket (one request) and publishes
                await client.publish("slow", [OutgoingMessage(body=1)])
    assert (limited.value.status, limited.value.code) == (429, ErrorCode.RATE_LIMITED)
    assert limited.value.retry_after == 1.0
    assert "WebSocket refused" not in limited.value.message  # a frame's reply, not the handshake


def test_the_cli_says_forbidden(scoped: BrokerProcess) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FERRY_BROKER_TOKEN"}
    env |= {"FERRY_BROKER_URL": scoped.url, "FERRY_BROKER_TOKEN": PUBLISHER}
    run = subprocess.run([FERRY, "queue", "create", "orders-x"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert run.returncode == 1
    assert "[forbidden]" in run.stderr and "needs the right admin" in run.stderr
    assert PUBLISHER not in run.stderr


def assert_no_token_logged(broker: BrokerProcess) -> None:
    """A debug-level broker's whole log, once stopped, holds no token."""
    assert broker.stop(timeout=30) == 0
    logs = broker.logs()
    assert '"serving"' in logs and '"stopped"' in logs
    assert not [t for t in TOKENS if t in logs]


@pytest.mark.parametrize(("text", "line"), [
    ("good\nsecret-in-line-2 publsh\n", 2),
    ("good\n# c\nsecret-in-line-3 read rate=5/minute\n", 3),
    ("secret-in-line-1 read\nsecret-in-line-1 publish\n", 2),
])
def test_a_malformed_token_file_stops_the_broker_naming_the_line(
    tmp_path: Path, text: str, line: int
) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    b = BrokerProcess(tmp_path / "d", tmp_path / "log", "--token-file", str(path))
    with pytest.raises(RuntimeError, match=r"ferry-broker exited 1") as failed:
        b.start()
    assert f"--token-file {path}: line {line}:" in str(failed.value)
    assert "secret-in-line" not in str(failed.value)


async def test_a_directory_is_read_like_a_mounted_secret(
    broker_factory: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    """The operator mounts the broker's Secret whole: a key per file, behind ..data links."""
    secret = tmp_path / "secret"
    data = secret / "..2026_11_30_23_00_00.000000001"
    data.mkdir(parents=True)
    (data / "token").write_text(ADMIN)  # the operator's own token: admin
    (data / "tokens").write_text(f"{PUBLISHER} publish queues=orders-*\n")
    (secret / "..data").symlink_to(data.name)
    for key in ("token", "tokens"):
        (secret / key).symlink_to(f"..data/{key}")
    b = broker_factory("--token-file", str(secret))
    async with Api.connect(b.url) as api:
        assert (await api.call("PUT", "/v1/queues/orders-eu", {}, headers=bearer(ADMIN)))[0] == 201
        status, doc = await api.call("PUT", "/v1/queues/orders-us", {}, headers=bearer(PUBLISHER))
        assert status == 403 and "tokens line 1" in doc["error"]["message"]
        status, _ = await api.call("POST", "/v1/queues/orders-eu/messages",
                                   {"messages": [{"body": 1}]}, headers=bearer(PUBLISHER))
        assert status == 200
