"""Wake on the first message: a group scaled to zero gets its first replica when the broker
reports the publish (a long poll the operator holds), not on a timer.

The operator runs with its resync and stats timers at an hour, so neither can take the
0 -> 1 step within the test's bound: only the broker's answer can.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from fixtures.broker_process import BrokerProcess
from operating import events, publish, queue_and_group_at_zero, replicas, workload

pytestmark = pytest.mark.envtest
QUEUE, CONSUMERS = "jobs", "workers"
HOUR = "3600"


def test_the_first_message_wakes_a_group_at_zero(
        control_plane: Any, namespace: str, broker: BrokerProcess, run_operator: Any,
        eventually: Callable[..., Any]) -> None:
    run_operator("--resync-seconds", HOUR, "--stats-seconds", HOUR, broker_url=broker.url)
    control_plane.kubectl("apply", "-f", "-",
                          input=json.dumps(workload(namespace, CONSUMERS, replicas=0)))
    queue_and_group_at_zero(control_plane, namespace, eventually, QUEUE, CONSUMERS)

    started = time.monotonic()
    publish(broker.url, QUEUE, 1)
    eventually(lambda: replicas(control_plane, namespace, CONSUMERS) == 1,
               "the first message brings the first replica",
               timeout=60)
    print(f"publish -> first replica: {time.monotonic() - started:.2f} s "
          "(timers at 1 h; includes kubectl polling)")
    woken = [m for _, reason, m in events(control_plane, namespace, CONSUMERS)
             if reason == "Activated"]
    assert woken and "the broker reported a backlog of 1" in woken[0]
