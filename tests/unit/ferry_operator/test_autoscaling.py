"""Lag-driven autoscaling decisions: metric value, HPA manifest, the 0 <-> 1 step."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferry.broker.models import GroupSettings, GroupStats
from ferry.operator.reconcile import consumergroups
from ferry.operator.reconcile.autoscaling import (
    METRIC_NAME,
    IdleReason,
    IdleState,
    build_hpa,
    decide_idle_scaling,
    metric_value,
    replica_status,
    replicas_for,
)
from ferry.operator.reconcile.specs import Autoscaling, ConsumerGroupSpec, Owner, Provider

from .conftest import apply_defaults, spec_schema

pytestmark = pytest.mark.unit
OWNER = Owner(api_version="ferry.dev/v1alpha1", kind="ConsumerGroup", name="billing",
              namespace="shop", uid="u-7", generation=3)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def stats(depth: int = 0, in_flight: int = 0, delayed: int = 0, dead: int = 0,
          restoring: bool = False) -> GroupStats:
    return GroupStats(queue="q", group="g", settings=GroupSettings(), depth=depth,
                      in_flight=in_flight, delayed=delayed, dead=dead,
                      lag=depth + in_flight + delayed, backlog=depth + in_flight,
                      oldest_ready_age_ms=0, acked_total=0,
                      consumers=[], restoring=restoring)


def group(**autoscaling: Any) -> ConsumerGroupSpec:
    """A ConsumerGroup spec as the API server stores it: with the CRD's defaults."""
    raw = {"target": {"name": "workers"}, "maxReplicas": 10, **autoscaling}
    defaulted = apply_defaults(spec_schema("ConsumerGroup"), {"queue": "orders",
                                                              "autoscaling": raw})
    return ConsumerGroupSpec.model_validate(defaulted)


def spec(**autoscaling: Any) -> Autoscaling:
    found = group(**autoscaling).autoscaling
    assert found is not None
    return found


# --- metric value -------------------------------------------------------------------------

def test_metric_counts_ready_and_in_flight_messages() -> None:
    assert metric_value(stats(depth=250, in_flight=30)) == 280


def test_delayed_and_dead_messages_do_not_ask_for_replicas() -> None:
    assert metric_value(stats(depth=5, delayed=1000, dead=70)) == 5


def test_a_broker_still_restoring_gives_no_figure_rather_than_a_low_one() -> None:
    # It has read back only part of its messages: 5 of perhaps a million.
    assert metric_value(stats(depth=5, restoring=True)) is None


@pytest.mark.parametrize(("value", "expected"), [
    (0, 1), (1, 1), (100, 1), (101, 2), (950, 10), (5000, 10),
])
def test_replicas_follow_lag_per_replica_bounded_by_min_and_max(value: int, expected: int) -> None:
    assert replicas_for(value, spec()) == expected


BASE = spec()


@given(value=st.integers(0, 10**7), lag_per_replica=st.integers(1, 10**4),
       low=st.integers(0, 20), extra=st.integers(0, 50))
def test_replicas_for_stays_within_bounds_and_covers_the_lag(
        value: int, lag_per_replica: int, low: int, extra: int) -> None:
    s = BASE.model_copy(update={"min_replicas": low, "max_replicas": max(1, low) + extra,
                                "lag_per_replica": lag_per_replica})
    n = replicas_for(value, s)
    assert max(1, s.min_replicas) <= n <= s.max_replicas
    if n < s.max_replicas:
        assert n * lag_per_replica >= value


# --- HPA manifest -------------------------------------------------------------------------

def test_hpa_scales_the_target_on_the_groups_lag_metric() -> None:
    hpa = build_hpa(OWNER, "orders", spec(target={"apiVersion": "apps/v1", "kind": "StatefulSet",
                                                  "name": "billing-workers"},
                                          lagPerReplica=250))
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                             "name": "billing-workers"}
    assert hpa["spec"]["metrics"] == [{
        "type": "External",
        "external": {
            "metric": {"name": METRIC_NAME,
                       "selector": {"matchLabels": {"queue": "orders", "group": "billing"}}},
            "target": {"type": "AverageValue", "averageValue": "250"},
        },
    }]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 10)


def test_hpa_is_a_child_of_the_group() -> None:
    hpa = build_hpa(OWNER, "orders", spec())
    assert (hpa["metadata"]["name"], hpa["metadata"]["namespace"]) == ("billing", "shop")
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == "u-7"
    assert hpa["metadata"]["labels"]["ferry.dev/owner-uid"] == "u-7"


def test_group_children_are_its_hpa_or_nothing() -> None:
    kids = consumergroups.children(OWNER, group(), provider=Provider.FERRY, endpoint=None)
    assert [k["kind"] for k in kids] == ["HorizontalPodAutoscaler"]
    plain = ConsumerGroupSpec.model_validate(
        apply_defaults(spec_schema("ConsumerGroup"), {"queue": "orders"}))
    assert consumergroups.children(OWNER, plain, provider=None, endpoint=None) == []


def test_hpa_behavior_takes_the_stabilization_windows_from_the_spec() -> None:
    hpa = build_hpa(OWNER, "q", spec(scaleUpStabilization="5s", scaleDownStabilization="2m"))
    assert hpa["spec"]["behavior"] == {"scaleUp": {"stabilizationWindowSeconds": 5},
                                       "scaleDown": {"stabilizationWindowSeconds": 120}}


def test_default_windows_scale_up_at_once_and_down_after_five_minutes() -> None:
    hpa = build_hpa(OWNER, "q", spec())
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_fractional_windows_round_up_to_whole_seconds() -> None:
    hpa = build_hpa(OWNER, "q", spec(scaleUpStabilization="1500ms"))
    assert hpa["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 2


def test_scale_to_zero_keeps_the_hpa_floor_at_one() -> None:
    hpa = build_hpa(OWNER, "q", spec(minReplicas=0))
    assert hpa["spec"]["minReplicas"] == 1


# --- the 0 <-> 1 step ---------------------------------------------------------------------

def test_idle_group_is_scaled_to_zero_after_idle_after() -> None:
    s = spec(minReplicas=0, idleAfter="5m")
    state = IdleState(last_active=NOW - timedelta(minutes=5))
    decision = decide_idle_scaling(spec=s, lag=0, replicas=3, state=state, now=NOW)
    assert decision.replicas == 0
    assert decision.reason is IdleReason.IDLE
    assert decision.state.scaled_to_zero


def test_idle_group_keeps_its_replicas_before_idle_after() -> None:
    s = spec(minReplicas=0, idleAfter="5m")
    state = IdleState(last_active=NOW - timedelta(minutes=4, seconds=59))
    decision = decide_idle_scaling(spec=s, lag=0, replicas=1, state=state, now=NOW)
    assert decision.replicas is None
    assert decision.state.last_active == state.last_active


def test_idle_clock_starts_at_the_first_observation() -> None:
    s = spec(minReplicas=0, idleAfter="0s")
    first = decide_idle_scaling(spec=s, lag=0, replicas=1, state=IdleState(), now=NOW)
    # idleAfter 0s: the first pass with no history already counts as idle long enough.
    assert first.replicas == 0
    s = spec(minReplicas=0, idleAfter="1m")
    first = decide_idle_scaling(spec=s, lag=0, replicas=1, state=IdleState(), now=NOW)
    assert (first.replicas, first.state.last_active) == (None, NOW)


def test_first_message_brings_an_idle_group_back_to_one() -> None:
    s = spec(minReplicas=0)
    state = IdleState(last_active=NOW - timedelta(hours=1), scaled_to_zero=True)
    decision = decide_idle_scaling(spec=s, lag=1, replicas=0, state=state, now=NOW)
    assert decision.replicas == 1
    assert decision.reason is IdleReason.ACTIVATED
    assert decision.state == IdleState(last_active=NOW)


def test_lag_never_touches_a_running_target() -> None:
    s = spec(minReplicas=0)
    for replicas in (1, 4, 10):
        decision = decide_idle_scaling(spec=s, lag=500, replicas=replicas, state=IdleState(),
                                       now=NOW)
        assert decision.replicas is None


def test_unknown_lag_changes_nothing() -> None:
    s = spec(minReplicas=0, idleAfter="1s")
    state = IdleState(last_active=NOW - timedelta(hours=1))
    decision = decide_idle_scaling(spec=s, lag=None, replicas=2, state=state, now=NOW)
    assert (decision.replicas, decision.state) == (None, state)


def test_without_scale_to_zero_an_idle_target_is_left_alone() -> None:
    s = spec(minReplicas=1, idleAfter="1s")
    state = IdleState(last_active=NOW - timedelta(hours=1))
    for replicas in (0, 1, 3):
        assert decide_idle_scaling(spec=s, lag=0, replicas=replicas, state=state,
                                   now=NOW).replicas is None


def test_disabling_scale_to_zero_restores_a_target_we_scaled_to_zero() -> None:
    s = spec(minReplicas=1)
    state = IdleState(last_active=NOW - timedelta(hours=1), scaled_to_zero=True)
    decision = decide_idle_scaling(spec=s, lag=0, replicas=0, state=state, now=NOW)
    assert (decision.replicas, decision.reason) == (1, IdleReason.RESTORED)
    assert not decision.state.scaled_to_zero


def test_a_zero_set_by_someone_else_is_not_ours() -> None:
    s = spec(minReplicas=1)
    decision = decide_idle_scaling(spec=s, lag=0, replicas=0, state=IdleState(), now=NOW)
    assert decision.replicas is None


def test_idle_state_round_trips_through_status() -> None:
    state = IdleState(last_active=NOW, scaled_to_zero=True)
    assert IdleState.model_validate(state.for_status()) == state


# --- status figures -----------------------------------------------------------------------

def test_status_replicas_come_from_the_hpa() -> None:
    hpa = {"status": {"currentReplicas": 2, "desiredReplicas": 5}}
    figures = replica_status(hpa, target_replicas=2)
    assert figures is not None
    assert figures.for_status() == {"currentReplicas": 2, "desiredReplicas": 5}


def test_status_replicas_at_zero_come_from_the_target() -> None:
    hpa = {"status": {"currentReplicas": 1, "desiredReplicas": 1}}
    figures = replica_status(hpa, target_replicas=0)
    assert figures is not None
    assert figures.for_status() == {"currentReplicas": 0, "desiredReplicas": 0}
    assert replica_status(hpa, target_replicas=None) is None
