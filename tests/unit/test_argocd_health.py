"""The Argo CD health checks in examples/gitops run, in Lua 5.1 (Argo CD's gopher-lua
dialect), against the statuses the operator writes."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

ROOT = Path(__file__).resolve().parents[2]
PATCH = ROOT / "examples" / "gitops" / "argocd-cm-patch.yaml"
KINDS = ["Queue", "ConsumerGroup", "TelemetryPipeline"]
pytestmark = pytest.mark.unit


def _script(kind: str) -> str:
    data: dict[str, str] = yaml.safe_load(PATCH.read_text())["data"]
    return data[f"resource.customizations.health.ferry.dev_{kind}"]


def _assess(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    lua = lua51.LuaRuntime()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(script)
    return str(hs["status"]), str(hs["message"])


def _cond(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def _obj(generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "orders", "generation": generation}}
    if status is not None:
        body["status"] = status
    return body


CASES = [
    pytest.param(
        _obj(2, {"observedGeneration": 2, "conditions": [
            _cond("Ready", "True", "BrokerReady", "broker orders-broker-0 is serving"),
            _cond("Progressing", "False", "Reconciled"),
            _cond("Degraded", "False", "Reconciled"),
        ]}),
        ("Healthy", "broker orders-broker-0 is serving"), id="ready",
    ),
    pytest.param(
        _obj(3, {"observedGeneration": 3, "conditions": [
            _cond("Ready", "False", "BrokerStarting", "waiting for 1 broker replica"),
            _cond("Progressing", "True", "RollingOut", "broker StatefulSet rolling out"),
        ]}),
        ("Progressing", "broker StatefulSet rolling out"), id="rolling-out",
    ),
    pytest.param(
        _obj(1, {"observedGeneration": 1, "conditions": [
            _cond("Ready", "False", "QueueMissing", "queue orders not found"),
            _cond("Degraded", "True", "QueueMissing", "queue orders not found"),
        ]}),
        ("Degraded", "queue orders not found"), id="degraded",
    ),
    pytest.param(
        _obj(1, {"observedGeneration": 1, "conditions": [
            _cond("Ready", "True", "BrokerReady", "ok"),
            _cond("Degraded", "True", "BrokerUnreachable", "broker unreachable for 5m"),
        ]}),
        ("Degraded", "broker unreachable for 5m"), id="degraded-wins-over-ready",
    ),
    pytest.param(
        _obj(4, {"observedGeneration": 3, "conditions": [_cond("Ready", "True", "BrokerReady")]}),
        ("Progressing", "Waiting for the Ferry operator to observe generation 4"),
        id="stale-generation",
    ),
    pytest.param(
        _obj(1, None),
        ("Progressing", "Waiting for the Ferry operator to observe generation 1"), id="no-status",
    ),
    pytest.param(
        _obj(1, {"observedGeneration": 1, "conditions": [
            _cond("Ready", "False", "BrokerFailed"),
        ]}),
        ("Degraded", "BrokerFailed"), id="not-ready-not-progressing",
    ),
    pytest.param(
        _obj(1, {"observedGeneration": 1}),
        ("Progressing", "Waiting for Ready"), id="no-conditions-yet",
    ),
    pytest.param(
        _obj(1, {"observedGeneration": 1, "conditions": [
            _cond("Ready", "False", "PodsFailing", "the broker cannot start"),
            _cond("Stalled", "True", "PodsFailing", "the broker cannot start: ImagePullBackOff"),
        ]}),
        ("Degraded", "the broker cannot start: ImagePullBackOff"), id="stalled",
    ),
    pytest.param(
        _obj(5, {"observedGeneration": 4, "conditions": [
            _cond("Ready", "True", "Reconciled", "ok"),
            _cond("ReconciliationPaused", "True", "ReconciliationPaused", "paused for an incident"),
        ]}),
        ("Suspended", "paused for an incident"), id="paused",
    ),
    pytest.param(
        _obj(2, {"observedGeneration": 2, "conditions": [
            _cond("Ready", "True", "Reconciled", "served"),
            _cond("ReconciliationPaused", "False", "ReconciliationResumed", "again"),
        ]}),
        ("Healthy", "served"), id="resumed",
    ),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("obj", "expected"), CASES)
def test_health(kind: str, obj: dict[str, Any], expected: tuple[str, str]) -> None:
    assert _assess(_script(kind), obj) == expected


def test_application_health_passes_through_for_sync_waves() -> None:
    data = yaml.safe_load(PATCH.read_text())["data"]
    script = data["resource.customizations.health.argoproj.io_Application"]
    app = {"metadata": {}, "status": {"health": {"status": "Degraded", "message": "crd missing"}}}
    assert _assess(script, app) == ("Degraded", "crd missing")
    assert _assess(script, {"metadata": {}})[0] == "Progressing"
