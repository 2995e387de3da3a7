"""The Argo CD health checks in examples/gitops run, in Lua 5.1 (Argo CD's gopher-lua
dialect), against the statuses the operator writes."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.health_statuses import CASES
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
