"""The CRDs hold up their conventions, and the docs/operator.md reference is generated from them."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry.broker.models import MAX_DEDUP_WINDOW_MS, MAX_DURATION_MS, MAX_LEASE_MS

from .conftest import CRDS, PLURALS

pytestmark = pytest.mark.unit
ROOT = CRDS.parent


def load(plural: str) -> dict[str, Any]:
    return yaml.safe_load((CRDS / f"{plural}.yaml").read_text())  # type: ignore[no-any-return]


def walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


@pytest.mark.parametrize("plural", PLURALS.values())
def test_conventions(plural: str) -> None:
    crd = load(plural)
    spec = crd["spec"]
    assert (spec["group"], spec["names"]["categories"]) == ("ferry.dev", ["ferry"])
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    root = version["schema"]["openAPIV3Schema"]
    undescribed = [p for p, s in walk(root, "") if p != ".metadata" and not s.get("description")]
    assert undescribed == []
    status = root["properties"]["status"]["properties"]
    assert {"observedGeneration", "conditions"} <= set(status)


@pytest.mark.parametrize("plural", PLURALS.values())
def test_printer_columns_point_at_declared_fields(plural: str) -> None:
    version = load(plural)["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"].split("[")[0].lstrip(".").split(".")
        node = root
        for part in path:
            if part == "metadata":
                break
            node = node["properties"][part]


def test_pipeline_queue_settings_are_a_queue_spec() -> None:
    queue = load("queues")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    pipeline = load("telemetrypipelines")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    embedded = pipeline["properties"]["spec"]["properties"]["queue"]
    assert embedded["properties"] == queue["spec"]["properties"]
    assert embedded["x-kubernetes-validations"] == queue["spec"]["x-kubernetes-validations"]


def test_readme_reference_is_generated_from_the_crds() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "crd_reference.py"), "--check"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_reference_check_catches_a_stale_readme(tmp_path: Path) -> None:
    readme = tmp_path / "operator.md"
    page = (ROOT / "docs" / "operator.md").read_text()
    text = page.replace("Largest message body", "Biggest body")
    readme.write_text(text)
    script = str(ROOT / "scripts" / "crd_reference.py")
    stale = subprocess.run([sys.executable, script, "--check", "--readme", str(readme)],
                           capture_output=True, text=True, check=False)
    assert stale.returncode == 1 and "out of date" in stale.stderr
    subprocess.run([sys.executable, script, "--readme", str(readme)], check=True)
    assert readme.read_text() == (ROOT / "docs" / "operator.md").read_text()


_UPPER = re.compile(r"!has\(self\.(\w+)\) \|\| duration\(self\.\1\) <= duration\('(\d+)h'\)")


def test_duration_bounds_are_the_brokers() -> None:
    """A CR the API server accepts is one the broker takes (ferry.broker.models' bounds)."""
    queue = {"retention": MAX_DURATION_MS, "visibilityTimeout": MAX_LEASE_MS,
             "dedupWindow": MAX_DEDUP_WINDOW_MS}
    want = {
        "queues": queue, "telemetrypipelines": queue,
        "consumergroups": {"visibilityTimeout": MAX_LEASE_MS, "initial": MAX_DURATION_MS,
                           "max": MAX_DURATION_MS},
    }
    for plural, bounds in want.items():
        root = load(plural)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        found = {
            m[1]: int(m[2]) * 3600 * 1000
            for _, schema in walk(root, "")
            for rule in schema.get("x-kubernetes-validations", [])
            if (m := _UPPER.fullmatch(rule["rule"]))
        }
        assert found == bounds, plural
