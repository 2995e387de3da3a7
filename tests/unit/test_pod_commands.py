"""Contract between the operator and the commands it runs: every pod the operator builds
for the example pipeline starts a Ferry console script with arguments that script's own
parser accepts (the parser is the single source of truth for flags)."""

from __future__ import annotations

import argparse
import importlib
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from ferry_operator.conftest import apply_defaults, spec_schema

from ferry.operator.reconcile import pipelines
from ferry.operator.reconcile.specs import Owner, TelemetryPipelineSpec

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
OWNER = Owner(api_version="ferry.dev/v1alpha1", kind="TelemetryPipeline", name="gpu-telemetry",
              namespace="ferry-demo", uid="u-1", generation=1)
pytestmark = pytest.mark.unit


def _containers() -> list[tuple[str, dict[str, Any]]]:
    body = yaml.safe_load((ROOT / "examples" / "telemetrypipeline.yaml").read_text())
    spec = TelemetryPipelineSpec.model_validate(
        apply_defaults(spec_schema("TelemetryPipeline"), body["spec"]))
    out = []
    for kid in pipelines.children(OWNER, spec, "http://gpu-telemetry-broker.ferry-demo.svc:7070"):
        for container in kid.get("spec", {}).get("template", {}).get("spec", {}).get(
                "containers", []):
            out.append((f"{kid['kind']}/{kid['metadata']['name']}", container))
    return out


def _parser(command: str) -> argparse.ArgumentParser:
    assert command in SCRIPTS, f"{command} is not a console script of pyproject.toml"
    module = importlib.import_module(SCRIPTS[command].split(":")[0])
    assert hasattr(module, "parser"), f"{module.__name__} has no parser() to check flags against"
    made: argparse.ArgumentParser = module.parser()
    return made


@pytest.mark.parametrize(("workload", "container"), _containers(), ids=lambda v: str(v)[:40])
def test_operator_pod_args_parse(workload: str, container: dict[str, Any]) -> None:
    command, *extra = container["command"]
    # $(VAR) references are expanded by the kubelet; any value stands in for them here.
    args = [re.sub(r"\$\(([A-Z_]+)\)", "1", a) for a in [*extra, *container.get("args", [])]]
    parser = _parser(command)
    parser.exit_on_error = False
    try:
        _, unknown = parser.parse_known_args(args)
    except (argparse.ArgumentError, SystemExit) as error:
        pytest.fail(f"{workload}: `{command} {' '.join(args)}` is rejected by {command}: {error}")
    assert not unknown, f"{workload}: {command} does not know {unknown}"
