"""The Grafana dashboard in manifests/ queries only metrics Ferry really exports.

Real processes: a broker, a streamer, a collector and the query API move a small batch
of the sample; their /metrics are scraped and every metric name in every panel's
PromQL must be among the samples they export.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.broker_process import BrokerProcess
from fixtures.dashboards import exported, queried_metrics
from testsupport.ports import free_port
from testsupport.processes import Process
from testsupport.waiting import answers, eventually

ROOT = Path(__file__).resolve().parents[2]
ROWS = 60
pytestmark = pytest.mark.functional


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read()).decode()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.stop(15)


def test_every_panel_queries_exported_metrics(broker: BrokerProcess, tmp_path: Path,
                                              processes: list[Process]) -> None:
    sample = tmp_path / "sample.csv"
    lines = (ROOT / "examples" / "data" / "dcgm_sample.csv").read_text().splitlines()
    bad = "2026-11-23T10:00:00Z,DCGM_FI_DEV_GPU_UTIL,not-a-number,,,,,,,,x,"
    sample.write_text("\n".join([*lines[: ROWS + 1], bad]) + "\n")
    storage = f"sqlite://{tmp_path / 'telemetry.db'}"
    ports = {name: free_port() for name in ("collector", "streamer", "api")}

    def start(*argv: str) -> None:
        processes.append(Process(argv, tmp_path / f"{argv[0]}.log").start())

    start("ferry-collector", "--broker-url", broker.url, "--queue", "telemetry", "--group",
          "collectors", "--create", "--storage", storage, "--metrics-host", "127.0.0.1",
          "--metrics-port", str(ports["collector"]))
    start("ferry-api", "--storage", storage, "--host", "127.0.0.1", "--port", str(ports["api"]))
    collector = f"http://127.0.0.1:{ports['collector']}/metrics"
    eventually(lambda: answers(collector), "collector up", 60)
    start("ferry-streamer", str(sample), "--broker-url", broker.url, "--queue", "telemetry",
          "--stay", "--http-port", str(ports["streamer"]))

    def all_stored() -> bool:
        return bool(re.search(r'ferry_collector_messages_total\{outcome="stored"\} 60\.0',
                              _get(f"http://127.0.0.1:{ports['collector']}/metrics")))
    eventually(all_stored, f"{ROWS} rows stored", 60)
    eventually(lambda: answers(f"http://127.0.0.1:{ports['api']}/healthz"), "API up", 60)
    _get(f"http://127.0.0.1:{ports['api']}/api/v1/gpus")
    eventually(lambda: answers(f"http://127.0.0.1:{ports['streamer']}/metrics"), "streamer up", 60)

    names: set[str] = set()
    urls = [f"{broker.url}/metrics", *(f"http://127.0.0.1:{p}/metrics" for p in ports.values())]
    for url in urls:
        names |= exported(_get(url))
    # The operator's panels need a Kubernetes API: tests/envtest/test_dashboard_operator_metrics.py.
    queried = {m for m in queried_metrics() if not m.startswith("ferry_operator_")}
    assert queried, "the dashboard queries nothing"
    assert queried <= names, f"not exported by any Ferry process: {sorted(queried - names)}"


def test_dashboard_is_shipped_with_the_kustomize_base() -> None:
    kustomization = (ROOT / "manifests" / "grafana" / "kustomization.yaml").read_text()
    assert "ferry-dashboard.json" in kustomization
    assert "../grafana" in (ROOT / "manifests" / "core" / "kustomization.yaml").read_text()
