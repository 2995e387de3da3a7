"""The Grafana dashboard in manifests/ queries only metrics Ferry really exports.

Real processes: a broker, a streamer, a collector and the query API move a small batch
of the sample; their /metrics are scraped and every metric name in every panel's
PromQL must be among the samples they export.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.broker_process import BrokerProcess
from fixtures.dashboards import exported, queried_metrics

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ROWS = 60
pytestmark = pytest.mark.functional


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read()).decode()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
    for proc in started:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for(probe: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.2)


def test_every_panel_queries_exported_metrics(broker: BrokerProcess, tmp_path: Path,
                                              processes: list[subprocess.Popen[bytes]]) -> None:
    sample = tmp_path / "sample.csv"
    lines = (ROOT / "examples" / "data" / "dcgm_sample.csv").read_text().splitlines()
    bad = "2026-11-23T10:00:00Z,DCGM_FI_DEV_GPU_UTIL,not-a-number,,,,,,,,x,"
    sample.write_text("\n".join([*lines[: ROWS + 1], bad]) + "\n")
    storage = f"sqlite://{tmp_path / 'telemetry.db'}"
    ports = {name: _free_port() for name in ("collector", "streamer", "api")}

    def start(*argv: str) -> None:
        with (tmp_path / f"{argv[0]}.log").open("wb") as log:
            processes.append(subprocess.Popen([str(BIN / argv[0]), *argv[1:]], stdout=log,
                                              stderr=subprocess.STDOUT))

    start("ferry-collector", "--broker", broker.url, "--queue", "telemetry", "--group",
          "collectors", "--create", "--storage", storage, "--http-host", "127.0.0.1",
          "--http-port", str(ports["collector"]))
    start("ferry-api", "--storage", storage, "--host", "127.0.0.1", "--port", str(ports["api"]))
    _wait_for(lambda: _up(f"http://127.0.0.1:{ports['collector']}/metrics"), "collector up")
    start("ferry-streamer", str(sample), "--broker", broker.url, "--queue", "telemetry",
          "--stay", "--http-port", str(ports["streamer"]))

    def all_stored() -> bool:
        return bool(re.search(r'ferry_collector_messages_total\{outcome="stored"\} 60\.0',
                              _get(f"http://127.0.0.1:{ports['collector']}/metrics")))
    _wait_for(all_stored, f"{ROWS} rows stored")
    _wait_for(lambda: _up(f"http://127.0.0.1:{ports['api']}/healthz"), "API up")
    _get(f"http://127.0.0.1:{ports['api']}/api/v1/gpus")
    _wait_for(lambda: _up(f"http://127.0.0.1:{ports['streamer']}/metrics"), "streamer up")

    names: set[str] = set()
    urls = [f"{broker.url}/metrics", *(f"http://127.0.0.1:{p}/metrics" for p in ports.values())]
    for url in urls:
        names |= exported(_get(url))
    # The operator's panels need a Kubernetes API: tests/envtest/test_dashboard_operator_metrics.py.
    queried = {m for m in queried_metrics() if not m.startswith("ferry_operator_")}
    assert queried, "the dashboard queries nothing"
    assert queried <= names, f"not exported by any Ferry process: {sorted(queried - names)}"


def _up(url: str) -> bool:
    try:
        _get(url)
    except OSError:
        return False
    return True


def test_dashboard_is_shipped_with_the_kustomize_base() -> None:
    kustomization = (ROOT / "manifests" / "grafana" / "kustomization.yaml").read_text()
    assert "ferry-dashboard.json" in kustomization
    assert "../grafana" in (ROOT / "manifests" / "core" / "kustomization.yaml").read_text()
