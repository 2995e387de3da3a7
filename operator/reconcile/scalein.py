"""Drain-first scale-in: each consumer pod's deletion cost is the work it holds.

When a ReplicaSet shrinks, the controller removes the pods with the lowest
`controller.kubernetes.io/pod-deletion-cost` first. Keeping that annotation equal to the
leases each pod's consumers hold (the broker's per-consumer in_flight) makes a scale-in,
whether the HPA's or KEDA's, take idle consumers before busy ones. Pure: the handlers read
pods and stats, this says which annotations to change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ferry.broker.models import ConsumerInfo

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def selector_of(workload: Mapping[str, Any]) -> str | None:
    """The label selector of a Deployment's or StatefulSet's pods (matchLabels), or None."""
    labels = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None


def live_costs(pods: Iterable[Mapping[str, Any]]) -> dict[str, str | None]:
    """Pod name -> its deletion cost annotation, for pods that are not being deleted."""
    return {p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(DELETION_COST)
            for p in pods if not p["metadata"].get("deletionTimestamp")}


def pod_of(consumer: str, pods: Iterable[str]) -> str | None:
    """The pod a consumer runs in: consumers are named after their pod, exactly or with a
    suffix (the clients' default name is `<hostname>-<pid>`, and a pod's hostname is its
    name); the longest such pod name wins."""
    matches = [p for p in pods if consumer == p or consumer.startswith(f"{p}-")]
    return max(matches, key=len, default=None)


def leases_by_pod(pods: Iterable[str], consumers: Iterable[ConsumerInfo]) -> dict[str, int]:
    names = list(pods)
    held = dict.fromkeys(names, 0)
    for consumer in consumers:
        pod = pod_of(consumer.name, names)
        if pod is not None:
            held[pod] += consumer.in_flight
    return held


def cost_changes(current: Mapping[str, str | None],
                 consumers: Iterable[ConsumerInfo]) -> dict[str, str]:
    """pod -> the deletion cost to write, for the pods whose annotation is not that already.

    `current` maps each live pod of the target to its annotation (None when unset).
    """
    held = leases_by_pod(current, consumers)
    return {pod: str(n) for pod, n in held.items() if current[pod] != str(n)}
