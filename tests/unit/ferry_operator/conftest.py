"""Build custom-resource specs the way the API server stores them: with the CRD's defaults.

Tests then exercise the reconcilers on exactly the shape the operator reads, and the CRD
stays the only place defaults are written down.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry.operator.reconcile.workloads import PodDefaults

CRDS = Path(__file__).resolve().parents[3] / "crds"
# The operator's defaults as its Deployment would set them (an image of its own release).
DEFAULTS = PodDefaults(image="registry.example.com/ferry:9.9.9")
PLURALS = {"Queue": "queues", "ConsumerGroup": "consumergroups",
           "TelemetryPipeline": "telemetrypipelines"}


def spec_schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / f"{PLURALS[kind]}.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]  # type: ignore[no-any-return]


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural-schema defaulting as the API server does it (objects and arrays)."""
    if isinstance(value, dict) and "properties" in schema:
        for name, sub in schema["properties"].items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
    elif isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], v) for v in value]
    return value


Defaulted = Callable[[str, dict[str, Any]], dict[str, Any]]


@pytest.fixture
def defaulted() -> Defaulted:
    def build(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
        return apply_defaults(spec_schema(kind), copy.deepcopy(spec))  # type: ignore[no-any-return]
    return build
