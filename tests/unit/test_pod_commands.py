"""Contract between what Ferry deploys and the commands it runs: every Ferry container the
operator builds for the examples, and every one in manifests/ and examples/, starts a
console script with arguments that script's own argparse parser accepts (the parser is
the single source of truth for flags)."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ferry_operator.conftest import DEFAULTS, apply_defaults, spec_schema

from ferry.operator.reconcile import pipelines, queues
from ferry.operator.reconcile.specs import Owner, QueueSpec, TelemetryPipelineSpec

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
pytestmark = pytest.mark.unit


def _example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name).read_text())
    return doc


def _owner(doc: dict[str, Any]) -> Owner:
    return Owner(api_version=doc["apiVersion"], kind=doc["kind"], name=doc["metadata"]["name"],
                 namespace="ferry-demo", uid="u-1", generation=1)


def _pods(docs: list[dict[str, Any]], origin: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        template = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in template.get("containers", []):
            if (container.get("command") or [""])[0] in SCRIPTS:
                yield f"{origin}: {doc['kind']}/{doc['metadata']['name']}", container


def _operator_built() -> list[tuple[str, dict[str, Any]]]:
    pipeline, queue = _example("telemetrypipeline.yaml"), _example("queue.yaml")
    tp_spec = TelemetryPipelineSpec.model_validate(
        apply_defaults(spec_schema("TelemetryPipeline"), pipeline["spec"]))
    q_spec = QueueSpec.model_validate(apply_defaults(spec_schema("Queue"), queue["spec"]))
    kids = pipelines.children(_owner(pipeline), tp_spec, "http://b.ferry-demo.svc:7070", DEFAULTS)
    kids += queues.children(_owner(queue), q_spec, DEFAULTS)
    return list(_pods(kids, "operator"))


def _shipped() -> list[tuple[str, dict[str, Any]]]:
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    assert kubectl
    rendered = subprocess.run([kubectl, "kustomize", str(ROOT / "manifests")],
                              capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return list(_pods(docs, "shipped"))


def _rejection(command: str, args: list[str]) -> str | None:
    """Why `command` rejects `args`, or None when its parser accepts them."""
    module = importlib.import_module(SCRIPTS[command].split(":")[0])
    with contextlib.suppress(ModuleNotFoundError):
        module = importlib.import_module(f"{module.__name__}.args")
    make = getattr(module, "parser", None) or getattr(module, "build_parser", None)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            if make is not None:
                _, unknown = make().parse_known_args(args)
                if unknown:
                    return f"unknown arguments {unknown}"
            else:
                module.parse_args(args)
    except SystemExit:
        return err.getvalue().strip().splitlines()[-1]
    return None


@pytest.mark.parametrize(("workload", "container"), _operator_built() + _shipped(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_container_args_parse(workload: str, container: dict[str, Any]) -> None:
    command, *extra = container["command"]
    # $(VAR) references are expanded by the kubelet; any value stands in for them here.
    args = [re.sub(r"\$\(([A-Za-z_]+)\)", "1", a) for a in [*extra, *container.get("args", [])]]
    why = _rejection(command, args)
    assert why is None, f"{workload}: `{command} {' '.join(args)}`: {why}"


def test_every_kind_of_ferry_process_is_covered() -> None:
    commands = {c["command"][0] for _, c in _operator_built() + _shipped()}
    assert {"ferry-broker", "ferry-streamer", "ferry-collector", "ferry-api",
            "ferry-metrics-api", "ferry"} <= commands
