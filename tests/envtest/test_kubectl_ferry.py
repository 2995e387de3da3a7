"""`kubectl ferry` driven through the real kubectl (plugin discovery on PATH) against a real
operator, API server and token-protected broker: top, peek, dead (list and redrive),
--help, and clear errors with a non-zero exit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from operating import apply, cr, reconciled

from ferry.broker.client import BrokerClient
from ferry.broker.models import OutgoingMessage
from kubeplane.building import find_kubectl

pytestmark = pytest.mark.envtest
TOKEN = "plugin-test-token-0123456789abcdef"


def ferry(plane: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl ferry ARGS`: kubectl finds kubectl-ferry on PATH, as it does for users."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "KUBECONFIG": str(plane.kubeconfig)}
    return subprocess.run([str(find_kubectl()), "ferry", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def rows(output: str) -> dict[str, dict[str, str]]:
    lines = output.splitlines()
    header = lines[0].split()
    return {r.split()[1] if header[0] == "NAMESPACE" else r.split()[0]:
            dict(zip(header, r.split(), strict=False)) for r in lines[1:] if r.strip()}


def test_top_peek_and_dead_letters_through_kubectl(control_plane: Any, namespace: str,
                                                    broker_factory: Any, run_operator: Any,
                                                    eventually: Any, tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text(TOKEN + "\n")
    guarded = broker_factory("--token-file", str(tmp_path / "tokens"))
    # The Queue's token Secret, made before the operator would: it uses what it finds.
    control_plane.kubectl("create", "secret", "generic", "-n", namespace, "orders-broker-token",
                          f"--from-literal=token={TOKEN}")
    run_operator(broker_url=guarded.url)
    apply(control_plane, namespace, cr("Queue", "orders", {"maxDeliveries": 1}))
    apply(control_plane, namespace, cr("ConsumerGroup", "workers", {"queue": "orders"}))
    eventually(lambda: reconciled(control_plane, namespace, "cg", "workers"),
               "the group is Ready on the token-protected broker")

    async def traffic(client: BrokerClient) -> None:
        await client.publish("orders", [OutgoingMessage(body={"n": n}, key=f"k{n}")
                                        for n in range(5)])
        leased = await client.receive("orders", "workers", "w1", max=2)
        await client.nack("orders", "workers", [m.receipt for m in leased])  # -> dead letters
    on_broker_with_token(guarded.url, traffic)

    top = ferry(control_plane, "top", "queues", "-n", namespace)
    assert top.returncode == 0, top.stderr
    orders = rows(top.stdout)["orders"]
    assert (orders["MESSAGES"], orders["DEAD"], orders["GROUPS"]) == ("5", "2", "1")

    peek = ferry(control_plane, "peek", "orders", "-n", namespace)
    assert peek.returncode == 0, peek.stderr
    assert peek.stdout.count('{"n":') == 5 and "workers:dead(1)" in peek.stdout

    dead = ferry(control_plane, "dead", "workers", "-n", namespace)
    assert dead.returncode == 0, dead.stderr
    assert len(rows(dead.stdout)) == 2
    redrive = ferry(control_plane, "dead", "workers", "--redrive", "-n", namespace)
    assert redrive.returncode == 0 and "redrove 2 dead letters" in redrive.stdout
    assert ferry(control_plane, "dead", "workers", "-n", namespace).stdout.strip() \
        == "no dead letters"


def on_broker_with_token(url: str, call: Any) -> None:
    async def run() -> None:
        async with BrokerClient(url, token=TOKEN, retries=1, timeout=10) as client:
            await call(client)
    asyncio.run(run())


def test_help_and_clear_errors(control_plane: Any, namespace: str, ferry_crds: None) -> None:
    for args in (["--help"], ["top", "--help"], ["dead", "--help"], ["peek", "--help"]):
        shown = ferry(control_plane, *args)
        assert shown.returncode == 0 and "usage: kubectl ferry" in shown.stdout
    missing = ferry(control_plane, "peek", "nope", "-n", namespace)
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"kubectl-ferry: Queue {namespace}/nope not found"
    bad = ferry(control_plane, "peek", "nope", "--limit", "0")
    assert bad.returncode == 2 and "must be between 1 and 1000" in bad.stderr
    assert ferry(control_plane, "top", "queues", "-n", namespace).stdout.strip() == "no Queues"
