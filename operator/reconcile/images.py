"""Which image the operator runs for resources that name none (no side effects).

The operator's own: what its pod runs (so a kustomize `images:` edit or a Helm value that
moves the operator moves everything it runs), else the release it was built as.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import version
from typing import Any

REPOSITORY = "ghcr.io/ferry-dev/ferry"
CONTAINER = "operator"  # the operator's container in manifests/operator/deployment.yaml


def release() -> str:
    return f"{REPOSITORY}:{version('ferry')}"


def own(pod: Mapping[str, Any] | None) -> str:
    """The image of the operator's container in its own pod, else its release."""
    containers = ((pod or {}).get("spec") or {}).get("containers") or []
    for container in containers:
        if container.get("name") == CONTAINER and container.get("image"):
            return str(container["image"])
    if len(containers) == 1 and containers[0].get("image"):
        return str(containers[0]["image"])
    return release()
