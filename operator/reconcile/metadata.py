"""Ferry's API identity, labels and owner references: what every child object carries."""

from __future__ import annotations

from typing import Any

from ferry.operator.identity import API_VERSION as API_VERSION
from ferry.operator.identity import FIELD_MANAGER as FIELD_MANAGER
from ferry.operator.identity import GROUP as GROUP
from ferry.operator.identity import VERSION as VERSION
from ferry.operator.reconcile.specs import Owner

FINALIZER = f"{GROUP}/finalizer"

# Label keys (values are per object).
NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
PART_OF = "app.kubernetes.io/part-of"
MANAGED_BY = "app.kubernetes.io/managed-by"
OWNER_UID = f"{GROUP}/owner-uid"  # selects an owner's children for pruning
OWNER_KIND = f"{GROUP}/owner-kind"
QUEUE = f"{GROUP}/queue"

Manifest = dict[str, Any]


def selector_labels(owner: Owner, component: str) -> dict[str, str]:
    """Stable labels a workload's selector uses (selectors are immutable, so keep them few)."""
    return {NAME: "ferry", INSTANCE: owner.name, COMPONENT: component}


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        **selector_labels(owner, component),
        PART_OF: "ferry",
        MANAGED_BY: FIELD_MANAGER,
        OWNER_KIND: owner.kind.lower(),
        OWNER_UID: owner.uid,
    }


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(owner: Owner, name: str, component: str, **extra_labels: str) -> Manifest:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": {**labels(owner, component), **extra_labels},
        "ownerReferences": [owner_reference(owner)],
    }
