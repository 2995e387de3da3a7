"""Wake on the first message, measured to its first delivery: a group of collectors scaled
to zero, run by the process kubelet, and one publish. The operator's timers are at an hour,
so only the broker's answer to the operator's long poll can start the first pod.

test_wake.py measures publish -> replicas 1; this one goes on to the moment a consumer pod
holds the message (leased to it, then stored and acked), which adds the ReplicaSet, the
kubelet and the collector's start-up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from fixtures.broker_process import BrokerProcess
from operating import collectors, on_broker, queue_and_group_at_zero, replicas, telemetry_rows

pytestmark = pytest.mark.envtest
QUEUE, CONSUMERS = "jobs", "workers"
HOUR = "3600"


def test_the_first_message_reaches_a_consumer_of_a_group_at_zero(
        control_plane: Any, namespace: str, broker: BrokerProcess, run_operator: Any,
        process_kubelet: Any, eventually: Callable[..., Any]) -> None:
    run_operator("--resync-seconds", HOUR, "--stats-seconds", HOUR, broker_url=broker.url)
    process_kubelet()
    deployment = collectors(namespace, CONSUMERS, broker.url, QUEUE, replicas=0)
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(deployment))
    queue_and_group_at_zero(control_plane, namespace, eventually, QUEUE, CONSUMERS)

    assert replicas(control_plane, namespace, CONSUMERS) == 0
    started = time.monotonic()
    on_broker(broker.url, lambda c: c.publish(QUEUE, telemetry_rows(0, 1)))

    def delivered() -> float | None:
        g = on_broker(broker.url, lambda c: c.group_stats(QUEUE, CONSUMERS))
        return time.monotonic() - started if g.in_flight or g.acked_total else None

    took = eventually(delivered, "a consumer pod receives the first message",
                      timeout=120, interval=0.05)
    assert replicas(control_plane, namespace, CONSUMERS) >= 1
    print(f"publish -> first delivery from zero: {took:.2f} s (timers at 1 h; includes the "
          "ReplicaSet, the process kubelet's 0.5 s sync and the collector's start-up)")
    eventually(lambda: on_broker(broker.url, lambda c: c.group_stats(QUEUE, CONSUMERS))
               .acked_total == 1, "the first message stored and acked")
