"""Growing a broker's volume (no side effects: the handler acts on the plan).

A StatefulSet's volumeClaimTemplates are immutable, so a bigger `spec.storage.size` is
carried out the way storage operators do it (ECK, Strimzi): patch each existing claim to
the new size (the StorageClass must allow volume expansion), then delete the StatefulSet
with propagationPolicy Orphan, which leaves its pods and claims running, and apply it
again with the new template; the new StatefulSet adopts the same pods without a restart.
The CRD lets size only grow, so "different" means "bigger" here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from ferry.operator.reconcile.conditions import Reason
from ferry.operator.reconcile.metadata import Manifest


class Step(StrEnum):
    NONE = "None"          # sizes agree (or no StatefulSet yet): apply as usual
    GROW = "Grow"          # patch the claims, orphan-delete the StatefulSet, apply again
    BLOCKED = "Blocked"    # the StorageClass cannot expand: keep the old template, say why


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True)

    step: Step
    size: str = ""
    claims: tuple[str, ...] = ()
    message: str = ""


def claim_size(sts: Mapping[str, Any]) -> str | None:
    templates = (sts.get("spec") or {}).get("volumeClaimTemplates") or []
    if not templates:
        return None
    return str(templates[0]["spec"]["resources"]["requests"]["storage"])


def claim_names(sts: Mapping[str, Any]) -> tuple[str, ...]:
    """The claims a StatefulSet's pods use: <template>-<statefulset>-<ordinal>."""
    spec = sts.get("spec") or {}
    name = sts["metadata"]["name"]
    templates = spec.get("volumeClaimTemplates") or []
    return tuple(f"{t['metadata']['name']}-{name}-{i}"
                 for t in templates for i in range(int(spec.get("replicas", 1))))


def class_name(sts: Mapping[str, Any], claim: Mapping[str, Any] | None) -> str | None:
    """The StorageClass the claims use: the template's, else the one the claim got."""
    templates = (sts.get("spec") or {}).get("volumeClaimTemplates") or []
    named = templates[0]["spec"].get("storageClassName") if templates else None
    return named or ((claim or {}).get("spec") or {}).get("storageClassName")


def plan(desired: Mapping[str, Any], live: Mapping[str, Any] | None,
         storage_class: Mapping[str, Any] | None, class_label: str | None) -> Plan:
    """What to do about `desired`'s claim size given the `live` StatefulSet and its class."""
    if live is None or claim_size(live) in (None, claim_size(desired)):
        return Plan(step=Step.NONE)
    size = str(claim_size(desired))
    if storage_class is None or not storage_class.get("allowVolumeExpansion"):
        which = f"StorageClass {class_label}" if class_label else "the default StorageClass"
        return Plan(step=Step.BLOCKED, size=size, message=(
            f"storage.size {size} needs volume expansion, which {which} does not allow "
            f"(allowVolumeExpansion); the volume stays {claim_size(live)}"))
    return Plan(step=Step.GROW, size=size, claims=claim_names(live))


def keep_live_size(desired: Manifest, live: Mapping[str, Any]) -> Manifest:
    """`desired` asking its claims for the live size (the only template the API server
    accepts while the volume cannot grow)."""
    templates = [{**t, "spec": {**t["spec"], "resources": {"requests": {
        "storage": claim_size(live)}}}} for t in desired["spec"]["volumeClaimTemplates"]]
    return {**desired, "spec": {**desired["spec"], "volumeClaimTemplates": templates}}


def still_blocked(previous: Sequence[Mapping[str, Any]], desired: Mapping[str, Any],
                  live: Mapping[str, Any]) -> str | None:
    """The last StorageNotExpandable message while the sizes still differ (passes that do
    not look at the StorageClass keep the verdict instead of flapping back to Ready)."""
    if claim_size(live) == claim_size(desired):
        return None
    return last_block(previous)


def last_block(previous: Sequence[Mapping[str, Any]]) -> str | None:
    """The StorageNotExpandable message the conditions show, if they show one."""
    for c in previous:
        if c.get("type") == "Degraded" and c.get("status") == "True" and \
                c.get("reason") == Reason.STORAGE_NOT_EXPANDABLE:
            return str(c.get("message", ""))
    return None


def claim_patch(size: str) -> Manifest:
    return {"spec": {"resources": {"requests": {"storage": size}}}}
