"""Schemathesis over the broker's own /openapi.json, every check, against a real broker process.

Three runs, each bounded by time (FERRY_FUZZ_SECONDS, default 35 s): the embedded
engine with and without a token file, and the PostgreSQL engine. Each must pass
every check with not one 5xx among its requests, and the broker must then drain
on SIGTERM and start again cleanly on what the fuzzer left. FERRY_FUZZ_SEED
replays a run (the seed is printed). The WebSocket and the SSE stream are not
request/response operations (nor the stats stream): tests/fuzz/test_fuzz_ws.py fuzzes the
WebSocket.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fixtures.broker_process import BrokerProcess
from fixtures.brokers import engine_args
from testsupport.processes import BIN

pytestmark = pytest.mark.fuzz

SECONDS = int(os.environ.get("FERRY_FUZZ_SECONDS", "35"))
SEED = os.environ.get("FERRY_FUZZ_SEED", "20261130")
TOKEN = "fuzz-token"
CONFIG = Path(__file__).with_name("schemathesis.toml")
NOT_FUZZED = ("/v1/ws", "/v1/queues/{queue}/groups/{group}/stream", "/v1/stats/stream")


@dataclass
class Run:
    exit_code: int
    output: str
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


def schemathesis(broker: BrokerProcess, report: Path, *extra: str) -> Run:
    argv = [
        str(BIN / "st"), "--config-file", str(CONFIG), "run", f"{broker.url}/openapi.json",
        "--checks", "all",
        "--max-time", str(SECONDS), "--workers", "1", "--seed", SEED,
        "--request-timeout", "75", "--report", "ndjson", "--report-ndjson-path", str(report),
        "--output-truncate", "false", "--no-color",
        *(arg for path in NOT_FUZZED for arg in ("--exclude-path", path)), *extra,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=SECONDS * 3 + 120,
                          env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    run = Run(done.returncode, done.stdout + done.stderr)
    for line in report.read_text().splitlines():
        event = json.loads(line).get("ScenarioFinished")
        if not event:
            continue
        for interaction in (event["recorder"].get("interactions") or {}).values():
            response = interaction.get("response")
            if response is None:
                continue
            status = response["status_code"]
            run.statuses[status] += 1
            if status >= 500:
                request = interaction["request"]
                run.server_errors.append(f"{status} {request['method']} {request['uri']}")
    return run


def restarts_cleanly(broker: BrokerProcess) -> None:
    assert broker.stop(timeout=60) == 0, broker.logs()[-3000:]
    broker.start()
    for path in ("/readyz", "/v1/queues", "/openapi.json"):
        request = urllib.request.Request(
            broker.url + path, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.status == 200, path


@pytest.mark.parametrize(("engine", "auth"), [
    ("sqlite", False), ("sqlite", True), ("postgres", False),
], ids=["sqlite-open", "sqlite-token-file", "postgres-open"])
def test_schemathesis_finds_no_failure_and_no_5xx(
    engine: str, auth: bool, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    extra: list[str] = []
    flags = engine_args(request, engine)
    if auth:
        tokens = tmp_path / "tokens"
        tokens.write_text(TOKEN + "\n")
        flags += ["--token-file", str(tokens)]
        extra = ["-H", f"Authorization: Bearer {TOKEN}"]
    broker = BrokerProcess(tmp_path / "data", tmp_path / "broker.log", *flags)
    broker.start()
    try:
        run = schemathesis(broker, tmp_path / "report.ndjson", *extra)
        print(f"schemathesis seed {SEED} on {engine}: {run.requests} requests, "
              f"statuses {dict(sorted(run.statuses.items()))}")
        assert run.requests > 100, run.output[-5000:]
        assert run.server_errors == [], run.server_errors[:20]
        assert run.exit_code == 0, run.output[-20000:]
        restarts_cleanly(broker)
    finally:
        with contextlib.suppress(Exception):
            broker.stop(timeout=30)
        broker.kill()
