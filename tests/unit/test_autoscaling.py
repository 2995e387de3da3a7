"""Lag-driven autoscaling decisions: metric value, HPA manifest, the 0 <-> 1 step."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ferry.broker.models import GroupSettings, GroupStats
from ferry.operator.reconcile.autoscaling import (
    METRIC_NAME,
    Autoscaling,
    IdleReason,
    IdleState,
    build_hpa,
    decide_idle_scaling,
    metric_value,
    parse_duration,
    replica_status,
    replicas_for,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def stats(depth: int = 0, in_flight: int = 0, delayed: int = 0, dead: int = 0) -> GroupStats:
    return GroupStats(queue="q", group="g", settings=GroupSettings(), depth=depth,
                      in_flight=in_flight, delayed=delayed, dead=dead,
                      lag=depth + in_flight + delayed, oldest_ready_age_ms=0, acked_total=0,
                      consumers=[])


def spec(**overrides: object) -> Autoscaling:
    raw: dict[str, object] = {"target": {"name": "workers"}, "minReplicas": 1,
                              "maxReplicas": 10, "lagPerReplica": 100}
    raw.update(overrides)
    return Autoscaling.model_validate(raw)


# --- metric value -------------------------------------------------------------------------

def test_metric_counts_ready_and_in_flight_messages() -> None:
    assert metric_value(stats(depth=250, in_flight=30)) == 280


def test_delayed_and_dead_messages_do_not_ask_for_replicas() -> None:
    assert metric_value(stats(depth=5, delayed=1000, dead=70)) == 5


@pytest.mark.parametrize(("value", "expected"), [
    (0, 1), (1, 1), (100, 1), (101, 2), (950, 10), (5000, 10),
])
def test_replicas_follow_lag_per_replica_bounded_by_min_and_max(value: int, expected: int) -> None:
    assert replicas_for(value, spec()) == expected


@given(value=st.integers(0, 10**7), lag_per_replica=st.integers(1, 10**4),
       low=st.integers(0, 20), extra=st.integers(0, 50))
def test_replicas_for_stays_within_bounds_and_covers_the_lag(
        value: int, lag_per_replica: int, low: int, extra: int) -> None:
    s = spec(minReplicas=low, maxReplicas=max(1, low) + extra, lagPerReplica=lag_per_replica)
    n = replicas_for(value, s)
    assert max(1, s.min_replicas) <= n <= s.max_replicas
    if n < s.max_replicas:
        assert n * lag_per_replica >= value


# --- spec ---------------------------------------------------------------------------------

def test_durations_parse_as_go_style_strings() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("250ms") == timedelta(milliseconds=250)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("5 minutes")


def test_min_above_max_is_refused_with_both_figures() -> None:
    with pytest.raises(ValidationError, match=r"minReplicas \(5\) > maxReplicas \(2\)"):
        spec(minReplicas=5, maxReplicas=2)


# --- HPA manifest -------------------------------------------------------------------------

def test_hpa_scales_the_target_on_the_groups_lag_metric() -> None:
    hpa = build_hpa(name="orders", namespace="shop", queue="orders", group="billing",
                    spec=spec(target={"apiVersion": "apps/v1", "kind": "StatefulSet",
                                      "name": "billing"}, lagPerReplica=250),
                    labels={"app.kubernetes.io/managed-by": "ferry"})
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"] == {"name": "orders", "namespace": "shop",
                               "labels": {"app.kubernetes.io/managed-by": "ferry"}}
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                             "name": "billing"}
    assert hpa["spec"]["metrics"] == [{
        "type": "External",
        "external": {
            "metric": {"name": METRIC_NAME,
                       "selector": {"matchLabels": {"queue": "orders", "group": "billing"}}},
            "target": {"type": "AverageValue", "averageValue": "250"},
        },
    }]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 10)


def test_hpa_behavior_takes_the_stabilization_windows_from_the_spec() -> None:
    hpa = build_hpa(name="g", namespace="n", queue="q", group="g",
                    spec=spec(scaleUpStabilization="5s", scaleDownStabilization="2m"))
    assert hpa["spec"]["behavior"] == {"scaleUp": {"stabilizationWindowSeconds": 5},
                                       "scaleDown": {"stabilizationWindowSeconds": 120}}


def test_default_windows_scale_up_at_once_and_down_after_five_minutes() -> None:
    hpa = build_hpa(name="g", namespace="n", queue="q", group="g", spec=spec())
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_windows_are_capped_at_the_hpas_one_hour_limit() -> None:
    hpa = build_hpa(name="g", namespace="n", queue="q", group="g",
                    spec=spec(scaleDownStabilization="3h"))
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 3600


def test_scale_to_zero_keeps_the_hpa_floor_at_one() -> None:
    hpa = build_hpa(name="g", namespace="n", queue="q", group="g", spec=spec(minReplicas=0))
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
