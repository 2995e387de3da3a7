"""`make demo DEMO_ARGS=--failover`: the queue on two broker pods over PostgreSQL, and the
leader killed half-way.

The pipeline's Queue gets `replicas: 2` and `storage.engine: postgres` (its database: the
demo's PostgreSQL, through a Secret); one broker pod leads, the other stands by unready.
The broker's Service is testsupport's ThreadedService on the port the pods' Service URL
maps to (each new connection goes to the broker whose /readyz answers 200, as kube-proxy
routes to ready endpoints). Half-way
through the stream the leader's process gets SIGKILL; the standby takes the queue set's
lock and serves, and the summary's row-by-row check says whether anything was lost or
repeated.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.error
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

from testsupport.waiting import GaveUpError, eventually

from ferrydemo.http import get_json

REPLICAS = 2
SECRET = "ferry-demo-queue-db"
TAKEOVER_LIMIT_S = 120.0  # a bound for a loaded machine: the figure printed is the measure


def replicated(pipeline: dict[str, Any]) -> dict[str, Any]:
    """The example pipeline with its queue on two broker pods over PostgreSQL."""
    doc = deepcopy(pipeline)
    queue = doc["spec"].setdefault("queue", {})
    queue["replicas"] = REPLICAS
    queue["storage"] = {**queue.get("storage", {}), "engine": "postgres",
                        "postgres": {"secretRef": {"name": SECRET, "key": "uri"}}}
    return doc


def secret(dsn: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET},
            "stringData": {"uri": dsn}}


def role(port: int) -> str | None:
    """What the broker on `port` says it is (/readyz), None if it does not answer."""
    try:
        doc = get_json(f"http://127.0.0.1:{port}/readyz", timeout=2)
    except urllib.error.HTTPError as error:  # 503: a standby, or failing
        with contextlib.suppress(ValueError):
            return str(json.loads(error.read()).get("role"))
        return None
    except (OSError, ValueError):
        return None
    return str(doc.get("role"))


@dataclass(frozen=True)
class Takeover:
    killed: str  # pod
    leader: str  # pod now leading
    seconds: float  # from SIGKILL to the new leader's /readyz 200


def kill_leader(brokers: dict[str, tuple[int, int]], check: Callable[[], None]) -> Takeover:
    """SIGKILL the leading broker (pod -> (pid, port)); wait for another to lead."""
    leaders = [pod for pod, (_, port) in brokers.items() if role(port) == "leader"]
    if len(leaders) != 1:
        raise RuntimeError(f"expected one leading broker among {sorted(brokers)}, "
                           f"found {leaders}")
    killed = leaders[0]
    os.kill(brokers[killed][0], signal.SIGKILL)
    t0 = time.monotonic()

    def new_leader() -> str | None:
        for pod, (_, port) in brokers.items():
            if pod != killed and role(port) == "leader":
                return pod
        check()
        return None

    try:
        leader = eventually(new_leader, f"a broker to take over from {killed}",
                            TAKEOVER_LIMIT_S, interval=0.02)
    except GaveUpError as error:
        raise RuntimeError(f"no broker took over from {killed} within "
                           f"{TAKEOVER_LIMIT_S:.0f}s") from error
    return Takeover(killed, leader, time.monotonic() - t0)
