"""Argo CD's own `argocd admin settings resource-overrides health` judges Ferry's resources
with the shipped argocd-cm exactly as the lupa tests do (tests/unit/test_argocd_health.py):
same statuses in, same health and message out, for all three kinds."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.health_statuses import CASES
from gitops import SETTINGS

from kubeplane.building import located
from kubeplane.tools import ARGOCD

pytestmark = pytest.mark.argocd
KINDS = ["Queue", "ConsumerGroup", "TelemetryPipeline"]


def argocd_health(obj: dict[str, Any], folder: Path) -> tuple[str, str]:
    resource = folder / "resource.yaml"
    resource.write_text(yaml.safe_dump(obj))
    out = subprocess.run([str(located(ARGOCD) / "argocd"), "admin", "settings",
                          "resource-overrides", "health", str(resource),
                          "--argocd-cm-path", str(SETTINGS)],
                         capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    return lines.get("STATUS", out.stdout), lines.get("MESSAGE", "")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("obj", "expected"), CASES)
def test_argocd_judges_like_the_lua_tests(kind: str, obj: dict[str, Any],
                                          expected: tuple[str, str], tmp_path: Path) -> None:
    assert argocd_health({**obj, "kind": kind}, tmp_path) == expected
