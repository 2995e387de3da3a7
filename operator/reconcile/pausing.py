"""The pause annotation: `ferry.dev/reconcile: paused` stops every write for one resource.

For incident work: the operator leaves the resource's children, its queue or group on the
broker and its status alone (only a ReconciliationPaused condition is added) until the
annotation is removed. Deleting a paused resource still runs its finalizer. No side effects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ferry.operator.reconcile.conditions import PAUSED, holds

ANNOTATION = "ferry.dev/reconcile"
PAUSED_VALUE = "paused"
FIELD = ("metadata", "annotations", ANNOTATION)  # kopf field path: dots in the key


def is_paused(annotations: Mapping[str, str]) -> bool:
    return annotations.get(ANNOTATION) == PAUSED_VALUE


def shows_paused(conditions: Sequence[Mapping[str, Any]]) -> bool:
    return holds(conditions, PAUSED)


def unapplied(body: Mapping[str, Any]) -> bool:
    """The spec changed since the last pass that applied children (it is pending)."""
    generation = (body.get("metadata") or {}).get("generation") or 0
    observed = (body.get("status") or {}).get("observedGeneration")
    return observed is not None and observed != generation
