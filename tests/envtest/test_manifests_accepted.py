"""The API server accepts what we ship: the kustomize base (moved into a test
namespace by an overlay, as a user would) and every custom resource in examples/.

Server-side dry runs: the real API server validates, defaults and runs the CEL
rules, and nothing is persisted, so no operator running elsewhere in the session
acts on the examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.manifests import overlay

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml"))
CRDS = ["queues.ferry.dev", "consumergroups.ferry.dev", "telemetrypipelines.ferry.dev"]
pytestmark = pytest.mark.envtest


@pytest.fixture(scope="module")
def crds_installed(control_plane: Any) -> None:
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    control_plane.wait_established(*CRDS, timeout=60)


def _items(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for doc in docs:
        out.extend(doc.get("items", []) if doc.get("kind", "").endswith("List") else [doc])
    return out


def test_kustomize_base_is_accepted(control_plane: Any, namespace: str, tmp_path: Path,
                                    crds_installed: None) -> None:
    rendered = control_plane.kubectl("kustomize", str(overlay(tmp_path, namespace))).stdout
    # The overlay's Namespace is the test's own (it exists already).
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] != "Namespace"]
    assert docs, "the base rendered nothing"
    # CRDs for real (identical to what other tests install), so the objects of those
    # kinds in the base (kopf's peering) can be checked; everything else as a dry run.
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                          input=yaml.safe_dump_all(crds))
    control_plane.wait_established(*(d["metadata"]["name"] for d in crds), timeout=60)
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    out = control_plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-o", "yaml",
        "-f", "-", input=yaml.safe_dump_all(rest), check=False)
    assert out.returncode == 0, out.stderr
    accepted = _items([d for d in yaml.safe_load_all(out.stdout) if d])
    assert sorted((d["kind"], d["metadata"]["name"]) for d in accepted) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in rest)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_is_accepted(control_plane: Any, namespace: str, example: Path,
                             crds_installed: None) -> None:
    out = control_plane.kubectl("apply", "--server-side", "--dry-run=server", "-n", namespace,
                                "-f", str(example), "-o", "yaml", check=False)
    assert out.returncode == 0, f"{example.name}: {out.stderr}"
    accepted = _items([d for d in yaml.safe_load_all(out.stdout) if d])
    assert accepted and all(d["metadata"]["namespace"] == namespace for d in accepted)


def test_a_broken_example_would_be_caught(control_plane: Any, namespace: str,
                                          crds_installed: None) -> None:
    """The check above has teeth: the same dry run rejects an invalid pipeline."""
    pipeline = yaml.safe_load((ROOT / "examples" / "telemetrypipeline.yaml").read_text())
    pipeline["spec"]["collector"]["minReplicas"] = 9
    pipeline["spec"]["collector"]["maxReplicas"] = 2
    out = control_plane.kubectl("apply", "--server-side", "--dry-run=server", "-n", namespace,
                                "-f", "-", input=yaml.safe_dump(pipeline), check=False)
    assert out.returncode != 0
    assert "minReplicas must not exceed" in out.stderr
