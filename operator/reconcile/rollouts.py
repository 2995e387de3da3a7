"""One workload at a time: when a workload's image changes (a new operator version, or a
new override), the change waits until no other workload the operator manages is rolling
out (readiness.rollout_gap), so an upgrade moves through brokers and pipelines one by one
(a broker drains and restarts, then the next), never all at once. No side effects: the
handler holds the slot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferry.operator.reconcile.metadata import Manifest
from ferry.operator.reconcile.readiness import is_workload


def _containers(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return list(spec.get("containers") or [])


def images(obj: Mapping[str, Any]) -> dict[str, str]:
    """Container name -> image of a workload's pod template."""
    return {c["name"]: c.get("image", "") for c in _containers(obj)}


def changes_image(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    if live is None or not is_workload(desired):
        return False
    return images(desired) != images(live)


def keep_images(desired: Manifest, live: Mapping[str, Any]) -> Manifest:
    """`desired` with the images the live workload runs (its turn has not come yet)."""
    running = images(live)
    template = desired["spec"]["template"]
    containers = [{**c, "image": running.get(c["name"], c["image"])}
                  for c in template["spec"]["containers"]]
    return {**desired, "spec": {**desired["spec"], "template": {
        **template, "spec": {**template["spec"], "containers": containers}}}}
