"""The Argo CD Applications in examples/gitops, as kustomize renders them: they point at
real folders of this repository, take the repository from its one parameter, order the
CRDs before the install before the custom resources, and keep the CRDs out of reach of
pruning and deletion."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_kustomize import kustomize

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "examples" / "gitops"
pytestmark = pytest.mark.unit


def _apps(folder: Path = GITOPS) -> dict[str, dict[str, Any]]:
    docs = kustomize(folder) + kustomize(folder / "apps")
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Application"}


def _wave(app: dict[str, Any]) -> int:
    return int(app["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


def test_every_application_points_at_a_folder_of_this_repo() -> None:
    apps = _apps()
    assert set(apps) == {"ferry", "ferry-crds", "ferry-install", "ferry-examples"}
    for name, app in apps.items():
        assert app["apiVersion"] == "argoproj.io/v1alpha1", name
        assert (ROOT / app["spec"]["source"]["path"]).is_dir(), name
    assert len({app["spec"]["source"]["repoURL"] for app in apps.values()}) == 1


def test_the_repository_is_one_parameter(tmp_path: Path) -> None:
    copy = tmp_path / "gitops"
    shutil.copytree(GITOPS, copy)
    repo = copy / "repo" / "repo.yaml"
    doc = yaml.safe_load(repo.read_text())
    doc["data"] = {"repoURL": "git://127.0.0.1:9418/ferry", "targetRevision": "test"}
    repo.write_text(yaml.safe_dump(doc))
    apps = {d["metadata"]["name"]: d for d in kustomize(copy) + kustomize(copy / "apps")}
    assert {(a["spec"]["source"]["repoURL"], a["spec"]["source"]["targetRevision"])
            for a in apps.values()} == {("git://127.0.0.1:9418/ferry", "test")}
    assert all(a["kind"] == "Application" for a in apps.values())  # the parameter stays local


def test_root_application_holds_the_other_three() -> None:
    apps = _apps()
    assert apps["ferry"]["spec"]["source"]["path"] == "examples/gitops/apps"
    assert {d["metadata"]["name"] for d in kustomize(GITOPS / "apps")} == set(apps) - {"ferry"}


def test_crds_then_install_then_custom_resources() -> None:
    apps = _apps()
    crds, install, examples = apps["ferry-crds"], apps["ferry-install"], apps["ferry-examples"]
    assert examples["spec"]["source"]["path"] == "examples"
    assert _wave(crds) < _wave(install) < _wave(examples)
    # The examples' folder must not pull the Applications themselves in again.
    assert examples["spec"]["source"]["directory"]["recurse"] is False


def test_the_crds_are_never_pruned_or_deleted_and_the_install_holds_none() -> None:
    apps = _apps()
    crds = kustomize(ROOT / apps["ferry-crds"]["spec"]["source"]["path"])
    assert {d["metadata"]["name"] for d in crds} == {
        "queues.ferry.dev", "consumergroups.ferry.dev", "telemetrypipelines.ferry.dev"}
    for crd in crds:
        options = crd["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]
        assert set(options.split(",")) == {"Prune=false", "Delete=false"}
    # No resources finalizer: deleting ferry-crds itself leaves them too.
    assert "finalizers" not in apps["ferry-crds"]["metadata"]
    install = kustomize(ROOT / apps["ferry-install"]["spec"]["source"]["path"])
    assert not [d for d in install if d["metadata"]["name"].endswith(".ferry.dev")]
    assert {d["kind"] for d in install} >= {"Deployment", "ClusterRole", "Namespace"}
