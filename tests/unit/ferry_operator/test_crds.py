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

from ferry.broker.bounds import limits
from ferry.broker.models import (
    MAX_DEDUP_WINDOW_MS,
    MAX_DURATION_MS,
    MAX_LEASE_MS,
    GroupSettings,
    QueueSettings,
)
from ferry.operator.reconcile import pipelines, queues
from ferry.operator.reconcile.specs import Owner, QueueSpec, TelemetryPipelineSpec

from .conftest import CRDS, DEFAULTS, PLURALS, Defaulted

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


def _integer_range(bounds: dict[str, Any]) -> tuple[int, int]:
    low = bounds["exclusiveMinimum"] + 1 if "exclusiveMinimum" in bounds else bounds["minimum"]
    return low, bounds["maximum"]


def test_integer_bounds_are_the_brokers() -> None:
    """The CRDs' integer settings take exactly what the broker takes (its request models)."""
    queue = {"maxMessageBytes": "max_message_bytes", "maxDeliveries": "max_deliveries",
             "maxDepth": "max_depth"}
    want = {
        ("queues", ".spec"): (QueueSettings, queue),
        ("telemetrypipelines", ".spec.queue"): (QueueSettings, queue),
        ("consumergroups", ".spec"): (GroupSettings, {"maxDeliveries": "max_deliveries"}),
    }
    for (plural, at), (model, fields) in want.items():
        schemas = dict(walk(load(plural)["spec"]["versions"][0]["schema"]["openAPIV3Schema"], ""))
        broker = limits(model)
        for crd_field, field in fields.items():
            schema = schemas[f"{at}.{crd_field}"]
            assert (schema["minimum"], schema["maximum"]) == _integer_range(broker[field]), (
                plural, crd_field)


def test_no_crd_defaults_an_image() -> None:
    """The operator decides the default image (its own): a CRD default would be persisted
    into every object and pin it forever."""
    for plural in PLURALS.values():
        root = load(plural)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        pinned = [p for p, s in walk(root, "") if p.endswith(".image") and "default" in s]
        assert pinned == [], plural


def test_pipeline_pod_templates_are_the_queues() -> None:
    """The pipeline's shared podTemplate and each workload's own are the Queue's schema."""
    def spec(plural: str) -> dict[str, Any]:
        root = load(plural)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        return root["properties"]["spec"]["properties"]  # type: ignore[no-any-return]
    pipeline, queue = spec("telemetrypipelines"), spec("queues")["podTemplate"]
    assert pipeline["podTemplate"] == queue
    for workload in ("streamer", "collector", "api"):
        assert pipeline[workload]["properties"]["podTemplate"] == queue, workload


def name_limit(plural: str) -> int:
    rules = load(plural)["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "x-kubernetes-validations"]
    (limit,) = [int(m.group(1)) for r in rules
                if (m := re.fullmatch(r"self\.metadata\.name\.size\(\) <= (\d+)", r["rule"]))]
    assert any(str(limit) in r["message"] for r in rules)  # the message says the limit
    return limit


# What Kubernetes allows each child's name: a Service name is a DNS label; a StatefulSet's
# pods carry a controller-revision-hash label "<name>-<10 chars>", so its name stays <= 52.
NAME_LIMITS = {"Service": 63, "StatefulSet": 52}
LABEL_VALUE = 63


def children_fit(kind: str, name: str, defaulted: Defaulted) -> bool:
    owner = Owner(api_version="ferry.dev/v1alpha1", kind=kind, name=name, namespace="n",
                  uid="u")
    if kind == "Queue":
        kids = queues.children(owner, QueueSpec.model_validate(defaulted("Queue", {})), DEFAULTS)
    else:
        spec = TelemetryPipelineSpec.model_validate(
            defaulted(kind, {"streamer": {"source": {"path": "/x"}}}))
        kids = pipelines.children(owner, spec, "http://b", DEFAULTS)
        # The child Queue's own children, as the operator will make them.
        child = QueueSpec.model_validate(defaulted("Queue", {}))
        kids += queues.children(owner.model_copy(update={"kind": "Queue"}), child, DEFAULTS)
    return all(len(k["metadata"]["name"]) <= NAME_LIMITS.get(k["kind"], 253)
               and all(len(v) <= LABEL_VALUE for v in k["metadata"]["labels"].values())
               for k in kids)


@pytest.mark.parametrize("kind", ["Queue", "TelemetryPipeline"])
def test_name_limit_is_the_longest_whose_children_fit(kind: str, defaulted: Defaulted) -> None:
    limit = name_limit(PLURALS[kind])
    assert children_fit(kind, "a" * limit, defaulted)
    assert not children_fit(kind, "a" * (limit + 1), defaulted)


def test_group_name_limit_is_a_label_value() -> None:
    assert name_limit("consumergroups") == LABEL_VALUE


# Short names and plurals of Kueue and Volcano CRDs, from their CRD manifests
# (kubernetes-sigs/kueue config/components/crd/bases, volcano-sh/volcano config/crd):
# GPU clusters the telemetry pipeline targets often run one of them.
TAKEN = {
    "kueue": {"localqueues", "queue", "queues", "lq", "clusterqueues", "cq", "workloads", "wl",
              "resourceflavors", "flavor", "flavors", "rf"},
    "volcano": {"queues", "q", "queue-v1beta1", "podgroups", "pg", "podgroup-v1beta1",
                "jobs", "vcjob", "vj"},
}


def test_short_names_do_not_collide_with_kueue_or_volcano() -> None:
    ours = {n for plural in PLURALS.values() for n in load(plural)["spec"]["names"]
            .get("shortNames", [])}
    assert ours and not ours & (TAKEN["kueue"] | TAKEN["volcano"])
