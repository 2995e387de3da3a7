"""Drain-first scale-in: deletion costs from the broker's per-consumer leases."""

import pytest

from ferry.broker.models import ConsumerInfo
from ferry.operator.reconcile import scalein

pytestmark = pytest.mark.unit
PODS = ["workers-7d9f-abcde", "workers-7d9f-fghij", "workers-7d9f-klmno", "workers-7d9f-pqrst"]


def consumer(name: str, in_flight: int) -> ConsumerInfo:
    return ConsumerInfo(name=name, last_seen_ms=0, in_flight=in_flight)


def test_a_consumer_belongs_to_the_pod_it_is_named_after() -> None:
    assert scalein.pod_of("workers-7d9f-abcde", PODS) == "workers-7d9f-abcde"
    assert scalein.pod_of("workers-7d9f-abcde-4711", PODS) == "workers-7d9f-abcde"  # host-pid
    assert scalein.pod_of("someone-else", PODS) is None
    assert scalein.pod_of("web-1-2", ["web-1", "web-1-2"]) == "web-1-2"  # the longest name


def test_each_pod_costs_the_leases_its_consumers_hold() -> None:
    held = scalein.leases_by_pod(PODS, [
        consumer("workers-7d9f-abcde-1", 3), consumer("workers-7d9f-abcde-2", 2),
        consumer("workers-7d9f-fghij-9", 1), consumer("stranger", 50)])
    assert held == {"workers-7d9f-abcde": 5, "workers-7d9f-fghij": 1,
                    "workers-7d9f-klmno": 0, "workers-7d9f-pqrst": 0}


def test_only_changed_costs_are_written_and_idle_pods_cost_zero() -> None:
    current = {"workers-7d9f-abcde": "5", "workers-7d9f-fghij": None,
               "workers-7d9f-klmno": "4", "workers-7d9f-pqrst": "0"}
    changes = scalein.cost_changes(current, [consumer("workers-7d9f-abcde-1", 5),
                                             consumer("workers-7d9f-fghij-1", 2)])
    assert changes == {"workers-7d9f-fghij": "2", "workers-7d9f-klmno": "0"}


def test_pods_being_deleted_are_left_alone() -> None:
    pods = [{"metadata": {"name": "a", "annotations": {scalein.DELETION_COST: "3"}}},
            {"metadata": {"name": "b", "deletionTimestamp": "2026-11-30T12:00:00Z"}},
            {"metadata": {"name": "c"}}]
    assert scalein.live_costs(pods) == {"a": "3", "c": None}


def test_the_pods_are_found_by_the_workloads_selector() -> None:
    deployment = {"spec": {"selector": {"matchLabels": {"app": "workers", "tier": "q"}}}}
    assert scalein.selector_of(deployment) == "app=workers,tier=q"
    assert scalein.selector_of({"spec": {}}) is None
