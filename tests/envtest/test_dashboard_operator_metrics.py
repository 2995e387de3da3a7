"""The dashboard's operator panels query metrics a real ferry-operator exports once it has
reconciled something (the other panels: tests/functional/test_dashboard_metrics.py)."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fixtures.dashboards import exported, queried_metrics
from operating import apply, cr, reconciled
from testsupport.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.envtest


def test_operator_panels_query_exported_metrics(control_plane: Any, namespace: str,
                                                broker: Any, run_operator: Any,
                                                eventually: Any) -> None:
    operator = run_operator("--external-broker-namespaces", namespace, broker_url=broker.url)
    queue = (ROOT / "examples" / "queue.yaml").read_text()
    control_plane.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=queue)
    eventually(lambda: reconciled(control_plane, namespace, "queue", "orders"),
               "the example Queue is Ready")
    # A queue on a broker nobody runs: what the broker-failure panel is for.
    control_plane.kubectl("create", "secret", "generic", "-n", namespace, "conn",
                          "--from-literal=token=t")
    apply(control_plane, namespace, cr("Queue", "lost", {"broker": {
        "url": f"http://127.0.0.1:{free_port()}", "connectionSecret": {"name": "conn"}}}))
    # An autoscaled group (its target need not exist for the figures to be exported).
    apply(control_plane, namespace, cr("ConsumerGroup", "workers", {
        "queue": "orders", "autoscaling": {"target": {"name": "workers"}, "maxReplicas": 3}}))
    control_plane.kubectl("create", "deployment", "workers", "-n", namespace,
                          "--image=registry.k8s.io/pause:3.10")
    queried = {m for m in queried_metrics() if m.startswith("ferry_operator_")}
    assert queried, "the dashboard has no operator panels"

    def scraped() -> set[str] | None:
        with urllib.request.urlopen(f"{operator.metrics_url}/metrics", timeout=10) as response:
            names = exported(bytes(response.read()).decode())
        return names if queried <= names else None
    eventually(scraped, f"ferry-operator exports every metric the dashboard queries: {queried}")
