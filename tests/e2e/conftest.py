"""Fixtures for the kind tier: a Docker engine, the image built from this checkout, a cluster.

Everything here skips, with the reason, when no Docker engine answers: kind runs
Kubernetes nodes as Docker containers, so there is nothing to test against
without one. pytest-kind-ng provides the cluster (`kind_cluster`); it uses
`kind` from PATH when there is one (`go install sigs.k8s.io/kind@latest`) and
the kubectl of this virtualenv, instead of downloading either.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "ferry:e2e"


def docker_problem() -> str | None:
    """Why the kind tier cannot run here, or None when a Docker engine answers."""
    docker = shutil.which("docker")
    if docker is None:
        return "no `docker` command on PATH (kind needs a Docker engine)"
    try:
        info = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        return f"no Docker engine reachable: {info.stderr.strip() or info.stdout.strip()}"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    e2e = [item for item in items if item.get_closest_marker("e2e")]
    if not e2e:
        return
    problem = docker_problem()
    if problem:
        for item in e2e:
            item.add_marker(pytest.mark.skip(reason=f"kind e2e skipped: {problem}"))


def pytest_configure(config: pytest.Config) -> None:
    # Point pytest-kind at binaries we already have unless told otherwise.
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    if kubectl and not config.getoption("kind_kubectl_bin"):
        config.option.kind_kubectl_bin = kubectl
    kind = shutil.which("kind")
    if kind and not config.getoption("kind_bin"):
        config.option.kind_bin = kind


@pytest.fixture(scope="session")
def ferry_image() -> Iterator[str]:
    """The image built from this checkout's Dockerfile."""
    subprocess.run(["docker", "build", "--tag", IMAGE, str(ROOT)], check=True)
    yield IMAGE
