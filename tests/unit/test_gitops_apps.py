"""The Argo CD Applications in examples/gitops point at real folders of this
repository and order the install before the custom resources."""

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "examples" / "gitops"
pytestmark = pytest.mark.unit


def _apps() -> dict[str, dict[str, Any]]:
    docs = [yaml.safe_load(p.read_text()) for p in sorted(GITOPS.rglob("*.yaml"))]
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Application"}


def _wave(app: dict[str, Any]) -> int:
    return int(app["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


def test_every_application_points_at_a_folder_of_this_repo() -> None:
    apps = _apps()
    assert {"ferry", "ferry-install", "ferry-examples"} <= set(apps)
    for name, app in apps.items():
        assert app["apiVersion"] == "argoproj.io/v1alpha1", name
        assert (ROOT / app["spec"]["source"]["path"]).is_dir(), name
    assert len({app["spec"]["source"]["repoURL"] for app in apps.values()}) == 1


def test_root_application_holds_the_other_two() -> None:
    apps = _apps()
    root = ROOT / apps["ferry"]["spec"]["source"]["path"]
    children = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in root.glob("*.yaml")}
    assert children == set(apps) - {"ferry"}


def test_install_syncs_before_the_custom_resources() -> None:
    apps = _apps()
    install, examples = apps["ferry-install"], apps["ferry-examples"]
    assert install["spec"]["source"]["path"] == "manifests"
    assert examples["spec"]["source"]["path"] == "examples"
    assert _wave(install) < _wave(examples)
    # The examples' folder must not pull the Applications themselves in again.
    assert examples["spec"]["source"]["directory"]["recurse"] is False
