"""The operator's copies of watched objects: what a pass reads instead of GETting."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.operator.clients.watched import Watched

pytestmark = pytest.mark.unit


def obj(kind: str, name: str, namespace: str = "shop", owner: str | None = None,
        **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [{"uid": owner, "controller": True}]
    return {"apiVersion": "v1", "kind": kind, "metadata": meta}


def test_children_are_found_by_owner_until_deleted_or_re_owned() -> None:
    watched = Watched()
    watched.observe("ADDED", obj("Service", "a", owner="u1"))
    watched.observe("ADDED", obj("ConfigMap", "a", owner="u1"))
    watched.observe("ADDED", obj("Service", "b", owner="u2"))
    assert [o["kind"] for o in watched.owned_by("u1")] == ["Service", "ConfigMap"]
    watched.observe("MODIFIED", obj("Service", "a", owner="u2"))  # adopted by another owner
    assert [o["kind"] for o in watched.owned_by("u1")] == ["ConfigMap"]
    assert {o["metadata"]["name"] for o in watched.owned_by("u2")} == {"a", "b"}
    watched.observe("DELETED", obj("ConfigMap", "a", owner="u1"))
    assert watched.owned_by("u1") == [] and len(watched) == 2
    assert watched.get("v1", "ConfigMap", "shop", "a") is None


def test_matching_selects_by_kind_namespace_and_labels() -> None:
    watched = Watched()
    watched.observe("ADDED", obj("Pod", "p1", app="broker", queue="orders"))
    watched.observe("ADDED", obj("Pod", "p2", app="broker", queue="users"))
    watched.observe("ADDED", obj("Pod", "p3", namespace="other", app="broker", queue="orders"))
    watched.observe("ADDED", obj("Service", "s", app="broker", queue="orders"))
    found = watched.matching("v1", "Pod", "shop", {"app": "broker", "queue": "orders"})
    assert [o["metadata"]["name"] for o in found] == ["p1"]
    watched.observe("MODIFIED", obj("Pod", "p1", app="broker", queue="moved"))
    assert watched.matching("v1", "Pod", "shop", {"queue": "orders"}) == []
    watched.observe("DELETED", obj("Pod", "p2"))
    assert [o["metadata"]["name"] for o in watched.matching("v1", "Pod", "shop", {})] == ["p1"]


def test_a_kept_copy_does_not_change_with_the_object_it_was_made_from() -> None:
    watched = Watched()
    source = obj("Service", "a", owner="u1", app="broker")
    watched.observe("ADDED", source)
    source["metadata"]["labels"]["app"] = "changed"
    assert watched.matching("v1", "Service", "shop", {"app": "broker"})


def test_an_owned_answer_is_kept_as_it_is() -> None:
    watched = Watched()
    answer = obj("Service", "a", owner="u1", app="broker")
    watched.observe("MODIFIED", answer, owned=True)
    assert watched.get("v1", "Service", "shop", "a") == answer
