"""Drift (desired vs watched child) and status writes worth making: both decide API traffic."""

from __future__ import annotations

import pytest

from ferry.operator.reconcile.drift import differs, only_status_moved
from ferry.operator.reconcile.noticing import noticeable

pytestmark = pytest.mark.unit

DESIRED = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b", "labels": {"a": "1"}},
           "spec": {"ports": [{"name": "http", "port": 7070, "targetPort": "http"}],
                    "selector": {"a": "1"}}}


def live(**changes: object) -> dict[str, object]:
    spec = {"ports": [{"name": "http", "port": 7070, "targetPort": "http", "protocol": "TCP"}],
            "selector": {"a": "1"}, "clusterIP": "10.0.0.1", **changes}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "b", "labels": {"a": "1", "other": "x"}, "uid": "u",
                         "resourceVersion": "7", "annotations": {}},
            "spec": spec, "status": {}}


def test_server_defaults_and_other_fields_are_not_drift() -> None:
    assert not differs(DESIRED, live())


def test_a_changed_or_missing_field_is_drift() -> None:
    assert differs(DESIRED, live(selector={"a": "2"}))
    assert differs(DESIRED, live(ports=[]))
    gone = live()
    del gone["spec"]["selector"]  # type: ignore[attr-defined]
    assert differs(DESIRED, gone)


def test_quantities_compare_as_text_and_empty_maps_may_be_dropped() -> None:
    assert not differs({"cpu": 1, "labels": {}}, {"cpu": "1"})
    assert differs({"cpu": 1}, {"cpu": "2"})
    assert differs({"flag": True}, {"flag": "True"})
    # The API server canonicalises quantities: one value, two spellings.
    assert not differs({"averageValue": "1000", "cpu": "0.5", "m": "1Gi"},
                       {"averageValue": "1k", "cpu": "500m", "m": "1073741824"})
    assert differs({"averageValue": "1000"}, {"averageValue": "2k"})
    assert differs({"every": "30s"}, {"every": "30000ms"})  # durations are text


def test_a_status_write_is_worth_it_only_when_a_reader_would_notice() -> None:
    current = {"depth": 5, "publishedTotal": 10, "conditions": [{"type": "Ready"}],
               "idle": {"lastActiveTime": "t1", "scaledToZero": False}}
    assert not noticeable(current, dict(current))
    assert not noticeable(current, {**current, "publishedTotal": 11, "oldestReadyAge": "3s",
                                    "idle": {"lastActiveTime": "t2", "scaledToZero": False}})
    assert noticeable(current, {**current, "depth": 6})
    assert noticeable(current, {**current, "idle": {"lastActiveTime": "t2",
                                                    "scaledToZero": True}})
    assert noticeable(None, {"depth": 0})


def test_an_event_that_moved_only_status_cannot_be_drift() -> None:
    before = live()
    moved = {**live(), "status": {"loadBalancer": {}},
             "metadata": {**before["metadata"], "resourceVersion": "8",  # type: ignore[dict-item]
                          "managedFields": [{"manager": "kube-controller-manager"}]}}
    assert only_status_moved(before, moved)
    assert not only_status_moved(before, live(selector={"a": "2"}))
    relabelled = {**live(), "metadata": {**before["metadata"], "labels": {}}}  # type: ignore[dict-item]
    assert not only_status_moved(before, relabelled)
