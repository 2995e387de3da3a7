"""A new operator version upgrades what it manages one workload at a time, losing nothing.

The process kubelet (scripts/ferrydemo) runs the pods as local processes: a Queue's broker
and a TelemetryPipeline's streamer, collector and API. A client publishes and consumes on
the Queue throughout. The operator is restarted with a new image (as a new release would
be), and every workload rolls to it: never two at once, the broker drained and restarted
on its volume, and every acknowledged publish consumed afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from nodes import Node
from operating import apply, cr, get, reconciled
from testsupport.ports import free_port

from ferry.broker.client import BrokerClient, BrokerError
from ferry.broker.models import OutgoingMessage
from ferry.operator.reconcile import readiness, rollouts

pytestmark = pytest.mark.envtest
ROOT = Path(__file__).resolve().parents[2]
OLD, NEW = "registry.example.com/ferry:1.0.0", "registry.example.com/ferry:1.1.0"
WORKLOADS = [("statefulset", "orders-broker"), ("statefulset", "gpu-streamer"),
             ("deployment", "gpu-collector"), ("deployment", "gpu-api")]


@pytest.fixture
def broker_port(process_kubelet: Callable[..., Node]) -> int:
    """The process kubelet for the test's namespace, syncing in a thread; the broker pod's
    port is fixed so the operator (--broker-url) and the client can reach it."""
    port = free_port()
    process_kubelet({("broker", 7070): port}, every=0.3, grace=20.0,
                    image_files={"/usr/share/ferry/examples": ROOT / "examples" / "data"})
    return port


@dataclass
class Traffic:
    """Publishes numbered messages and consumes them, riding out broker restarts."""

    url: str
    token: str
    acked: set[int] = field(default_factory=set)       # publishes the broker confirmed
    consumed: set[int] = field(default_factory=set)    # messages delivered to the consumer
    publishing: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    errors: int = 0

    async def _publish(self, broker: BrokerClient) -> None:
        n = 0
        while self.publishing.is_set():
            try:
                await broker.publish("orders", [OutgoingMessage(body={"n": n},
                                                                dedup_id=f"m-{n}")])
                self.acked.add(n)
                n += 1
            except BrokerError:
                self.errors += 1  # the same n (and dedup id) again: stored at most once
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.02)

    async def _consume(self, broker: BrokerClient) -> None:
        while not self.done.is_set():
            try:
                batch = await broker.receive("orders", "workers", "c1", max=50, wait_ms=300)
                if batch:
                    # Delivered is what "not lost" means: an ack whose answer never came (the
                    # broker restarting) may have committed, and then its messages never return.
                    self.consumed |= {int(d.body["n"]) for d in batch}
                    await broker.ack("orders", "workers", [d.receipt for d in batch])
            except BrokerError:
                self.errors += 1
                await asyncio.sleep(0.2)

    async def _run(self) -> None:
        async with BrokerClient(self.url, token=self.token, retries=2, timeout=5) as broker:
            await asyncio.gather(self._publish(broker), self._consume(broker))

    def start(self) -> threading.Thread:
        self.publishing.set()
        thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="traffic",
                                  daemon=True)
        thread.start()
        return thread


def _state(plane: Any, namespace: str) -> dict[str, tuple[str, bool]]:
    """Workload -> (its template's image, rolled out)."""
    out = {}
    for kind, name in WORKLOADS:
        obj = get(plane, namespace, kind, name) or {}
        image = next(iter(rollouts.images(obj).values()), "") if obj else ""
        out[name] = (image, bool(obj) and readiness.rollout_gap(obj) is None)
    return out


@pytest.mark.timeout(900)  # a liveness bound: four rollouts of local processes, one by one
def test_a_new_operator_version_rolls_everything_one_at_a_time_losing_nothing(
        control_plane: Any, namespace: str, run_operator: Any, eventually: Any,
        broker_port: int) -> None:
    url = f"http://127.0.0.1:{broker_port}"
    # The pipeline's queue lives on the Queue's broker (an external broker to it), so every
    # pod reaches it locally, with the token Ferry made for that broker.
    allowed = ("--external-broker-namespaces", namespace)
    old = run_operator("--image", OLD, *allowed, broker_url=url)
    apply(control_plane, namespace, cr("Queue", "orders", {}))
    apply(control_plane, namespace, cr("ConsumerGroup", "workers", {"queue": "orders"}))
    secret = eventually(lambda: get(control_plane, namespace, "secret", "orders-broker-token"),
                        "the broker's token Secret exists")
    token = base64.b64decode(secret["data"]["token"]).decode().strip()
    apply(control_plane, namespace, cr("TelemetryPipeline", "gpu", {
        "queue": {"broker": {"url": url, "connectionSecret": {"name": "orders-broker-token"}}},
        "streamer": {"source": {"path": "/usr/share/ferry/examples/dcgm_sample.csv"},
                     "loop": True, "ratePerSecond": 20},
        "collector": {"minReplicas": 1, "maxReplicas": 1}}))
    eventually(lambda: reconciled(control_plane, namespace, "cg", "workers"),
               "the group is Ready on the running broker", 240)
    eventually(lambda: all(image == OLD and done for image, done in
                           _state(control_plane, namespace).values()),
               "every workload runs the old image and is ready", 240)
    broker_pod = get(control_plane, namespace, "pod", "orders-broker-0")
    assert broker_pod is not None

    traffic = Traffic(url, token)
    thread = traffic.start()
    try:
        eventually(lambda: len(traffic.consumed) >= 20, "messages flow before the upgrade")
        old.process.stop()
        run_operator("--image", NEW, *allowed, broker_url=url)
        # Per workload, the poll at which its template took the new image (its rollout
        # began) and the first poll at which that rollout had completed.
        began: dict[str, int] = {}
        completed: dict[str, int] = {}
        polls = 0

        def upgraded() -> bool:
            nonlocal polls
            polls += 1
            state = _state(control_plane, namespace)
            for name, (image, done) in state.items():
                if image == NEW:
                    began.setdefault(name, polls)
                    if done:
                        completed.setdefault(name, polls)
            return len(completed) == len(WORKLOADS)
        eventually(upgraded, "every workload rolled out to the new image", 600)
        order = sorted(began, key=began.__getitem__)
        overlaps = [(a, b) for a, b in itertools.pairwise(order)
                    if began[b] < completed[a]]
        assert not overlaps, f"rolled out at the same time: {overlaps} ({began}, {completed})"
        restarted = get(control_plane, namespace, "pod", "orders-broker-0")
        assert restarted is not None
        assert restarted["metadata"]["uid"] != broker_pod["metadata"]["uid"]
        published = len(traffic.acked)
        eventually(lambda: len(traffic.acked) > published + 20,
                   "publishing goes on after the upgrade")
    finally:
        traffic.publishing.clear()
    try:
        eventually(lambda: traffic.acked <= traffic.consumed,
                   "every acknowledged publish is consumed", 180)
    finally:
        traffic.done.set()
        thread.join(60)
    lost = traffic.acked - traffic.consumed
    assert not lost, f"{len(lost)} acknowledged messages lost"
    print(f"published {len(traffic.acked)}, consumed {len(traffic.consumed)}, "
          f"client errors ridden out {traffic.errors}")
