"""Growing a broker's volume: the plan the handler carries out (reconcile.volumes)."""

from __future__ import annotations

import pytest

from ferry.operator.reconcile import queues, volumes
from ferry.operator.reconcile.specs import Owner, QueueSpec

from .conftest import DEFAULTS, Defaulted

pytestmark = pytest.mark.unit
OWNER = Owner(api_version="ferry.dev/v1alpha1", kind="Queue", name="orders", namespace="shop",
              uid="u-1")
EXPANDABLE = {"metadata": {"name": "fast"}, "allowVolumeExpansion": True}
FIXED = {"metadata": {"name": "fixed"}}


def sts(defaulted: Defaulted, size: str) -> dict[str, object]:
    spec = QueueSpec.model_validate(defaulted("Queue", {"storage": {"size": size}}))
    return next(k for k in queues.children(OWNER, spec, DEFAULTS) if k["kind"] == "StatefulSet")


def test_same_size_or_no_statefulset_is_nothing_to_do(defaulted: Defaulted) -> None:
    assert volumes.plan(sts(defaulted, "1Gi"), None, None, None).step is volumes.Step.NONE
    assert volumes.plan(sts(defaulted, "1Gi"), sts(defaulted, "1Gi"), None, None).step \
        is volumes.Step.NONE


def test_growth_patches_every_claim_where_the_class_allows(defaulted: Defaulted) -> None:
    plan = volumes.plan(sts(defaulted, "5Gi"), sts(defaulted, "1Gi"), EXPANDABLE, "fast")
    assert plan.step is volumes.Step.GROW and plan.size == "5Gi"
    assert plan.claims == ("data-orders-broker-0",)
    assert volumes.claim_patch("5Gi") == {"spec": {"resources": {"requests": {"storage": "5Gi"}}}}


def test_a_class_without_expansion_blocks_and_keeps_the_live_template(
        defaulted: Defaulted) -> None:
    desired, live = sts(defaulted, "5Gi"), sts(defaulted, "1Gi")
    plan = volumes.plan(desired, live, FIXED, "fixed")
    assert plan.step is volumes.Step.BLOCKED
    assert "StorageClass fixed does not allow" in plan.message and "stays 1Gi" in plan.message
    kept = volumes.keep_live_size(desired, live)
    assert volumes.claim_size(kept) == "1Gi"
    assert kept["spec"]["template"] == desired["spec"]["template"]  # type: ignore[index]
    missing = volumes.plan(desired, live, None, None)
    assert missing.step is volumes.Step.BLOCKED and "the default StorageClass" in missing.message


def test_the_class_is_the_templates_else_the_claims(defaulted: Defaulted) -> None:
    live = sts(defaulted, "1Gi")
    claim = {"spec": {"storageClassName": "standard"}}
    assert volumes.class_name(live, claim) == "standard"
    assert volumes.class_name(live, None) is None


def test_a_blocked_growth_stays_reported_until_the_sizes_agree(defaulted: Defaulted) -> None:
    degraded = [{"type": "Degraded", "status": "True", "reason": "StorageNotExpandable",
                 "message": "no expansion"}]
    desired, live = sts(defaulted, "5Gi"), sts(defaulted, "1Gi")
    assert volumes.still_blocked(degraded, desired, live) == "no expansion"
    assert volumes.still_blocked(degraded, desired, desired) is None
    assert volumes.still_blocked([], desired, live) is None
