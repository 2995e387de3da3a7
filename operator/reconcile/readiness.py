"""Whether an observed child object is ready, judged from its own status (no side effects)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ferry.operator.reconcile.metadata import API_VERSION

_WORKLOADS = {("apps/v1", "Deployment"), ("apps/v1", "StatefulSet")}


def is_ready(obj: Mapping[str, Any]) -> bool:
    key = (obj.get("apiVersion"), obj.get("kind"))
    status = obj.get("status") or {}
    if key[0] == API_VERSION:
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in status.get("conditions") or [])
    if key in _WORKLOADS:
        wanted = (obj.get("spec") or {}).get("replicas", 1)
        return int(status.get("readyReplicas") or 0) >= int(wanted)
    return True  # Services, ConfigMaps, budgets: existing is being ready


def ready_count(objects: Sequence[Mapping[str, Any] | None]) -> int:
    return sum(1 for o in objects if o is not None and is_ready(o))
