"""Bearer tokens: the client and the CLI send them on HTTP and on the WebSocket handshake."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fixtures.brokers import GUARDED_TOKEN, acked

from ferry.broker.client import BrokerClient, BrokerError
from ferry.broker.models import ErrorCode, OutgoingMessage

pytestmark = pytest.mark.functional

FERRY = shutil.which("ferry", path=str(Path(sys.executable).parent)) or "ferry"


@pytest.mark.parametrize("websocket", [True, False], ids=["websocket", "http"])
async def test_without_a_token_every_call_is_refused_but_health(
    guarded_broker: Any, websocket: bool
) -> None:
    async with BrokerClient(guarded_broker.url, websocket=websocket) as anonymous:
        assert await anonymous.health()
        with pytest.raises(BrokerError) as refused:
            await anonymous.put_queue("jobs")
        assert (refused.value.status, refused.value.code) == (401, ErrorCode.UNAUTHORIZED)
        with pytest.raises(BrokerError) as publish_refused:
            await anonymous.publish("jobs", [OutgoingMessage(body=1)])
        assert publish_refused.value.status == 401
    async with BrokerClient(guarded_broker.url, token="wrong", websocket=websocket) as wrong:
        with pytest.raises(BrokerError) as wrong_refused:
            await wrong.list_queues()
        assert wrong_refused.value.code == ErrorCode.UNAUTHORIZED


async def test_with_the_token_publish_and_stream_work(guarded_broker: Any) -> None:
    async with BrokerClient(guarded_broker.url, token=GUARDED_TOKEN) as client:
        await client.put_queue("jobs")
        await client.put_group("jobs", "workers")
        await client.publish("jobs", [OutgoingMessage(body=n) for n in range(10)])
        async with client.consumer("jobs", "workers", "c1") as consumer:
            assert [d.body for d in await acked(consumer, 10)] == list(range(10))


def test_the_cli_takes_the_token_from_flag_or_environment(guarded_broker: Any) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FERRY_BROKER_TOKEN"}
    env["FERRY_BROKER_URL"] = guarded_broker.url

    def ferry(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        run_env = env | ({"FERRY_BROKER_TOKEN": token} if token else {})
        return subprocess.run(
            [FERRY, *args], capture_output=True, text=True, env=run_env, timeout=120
        )

    refused = ferry("queue", "list")
    assert refused.returncode == 1 and "unauthorized" in refused.stderr
    assert ferry("queue", "create", "jobs", "--broker-token", GUARDED_TOKEN).returncode == 0
    listed = ferry("queue", "list", token=GUARDED_TOKEN)
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].startswith("jobs")
