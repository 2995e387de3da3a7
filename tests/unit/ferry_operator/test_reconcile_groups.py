"""ConsumerGroup -> broker group settings and status; deletion steps; durations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ferry.broker.models import Backoff, GroupSettings, GroupStats, HeaderFilter, StartAt
from ferry.kit import backoff
from ferry.operator.reconcile import consumergroups, deletion, durations
from ferry.operator.reconcile.observations import Failure, Problem
from ferry.operator.reconcile.specs import ConsumerGroupSpec, DeletionPolicy, Owner

from .conftest import Defaulted

pytestmark = pytest.mark.unit
NOW = datetime(2026, 1, 2, tzinfo=UTC)
OWNER = Owner(api_version="ferry.dev/v1alpha1", kind="ConsumerGroup", name="billing",
              namespace="shop", uid="u-2", generation=1)


def spec(defaulted: Defaulted, **fields: object) -> ConsumerGroupSpec:
    return ConsumerGroupSpec.model_validate(defaulted("ConsumerGroup", {"queue": "orders",
                                                                        **fields}))


def test_defaults_inherit_queue_settings(defaulted: Defaulted) -> None:
    assert consumergroups.group_settings(spec(defaulted)) == GroupSettings(
        start_at=StartAt.EARLIEST, visibility_timeout_ms=None, max_deliveries=None,
        nack_backoff=Backoff(initial_ms=1000, multiplier=2.0, max_ms=300_000))


def test_overrides_reach_the_broker(defaulted: Defaulted) -> None:
    s = spec(defaulted, startAt="Latest", visibilityTimeout="2m", maxDeliveries=3,
             nackBackoff={"initial": "250ms", "multiplier": 3, "max": "10s"})
    assert consumergroups.group_settings(s) == GroupSettings(
        start_at=StartAt.LATEST, visibility_timeout_ms=120_000, max_deliveries=3,
        nack_backoff=Backoff(initial_ms=250, multiplier=3.0, max_ms=10_000))


def test_a_filter_reaches_the_broker(defaulted: Defaulted) -> None:
    s = spec(defaulted, filter={"match": {"type": "order"}, "prefix": {"region": "eu-"}})
    assert consumergroups.group_settings(s).filter == HeaderFilter(
        match={"type": "order"}, prefix={"region": "eu-"})
    assert consumergroups.group_settings(spec(defaulted)).filter is None


def test_autoscaling_shape_is_parsed(defaulted: Defaulted) -> None:
    s = spec(defaulted, autoscaling={"target": {"name": "worker"}, "maxReplicas": 5})
    assert s.autoscaling is not None
    assert (s.autoscaling.target.kind, s.autoscaling.target.api_version) == \
        ("Deployment", "apps/v1")
    assert (s.autoscaling.min_replicas, s.autoscaling.lag_per_replica) == (1, 100)


def _group_stats() -> GroupStats:
    return GroupStats(queue="orders", group="billing", settings=GroupSettings(), depth=3,
                      in_flight=2, delayed=1, dead=4, lag=6, backlog=5, oldest_ready_age_ms=90_000,
                      acked_total=10, consumers=[])


def test_status_reports_lag_and_figures(defaulted: Defaulted) -> None:
    st = consumergroups.status(owner=OWNER, spec=spec(defaulted), endpoint_url="http://e",
                               stats=_group_stats(), failure=None, previous=[], now=NOW)
    assert {k: st[k] for k in ("lag", "depth", "inFlight", "dead", "consumers",
                               "oldestReadyAge")} == {
        "lag": 6, "depth": 3, "inFlight": 2, "dead": 4, "consumers": 0,
        "oldestReadyAge": "1m30s"}


# Each phase sets kstatus's condition beside Ferry's own (Reconciling/Progressing,
# Stalled/Degraded), in this order.
KSTATUS_TWIN = {"Progressing": ["Reconciling", "Progressing"], "Degraded": ["Stalled", "Degraded"]}


@pytest.mark.parametrize(("problem", "phase", "reason"), [
    (Problem.NO_QUEUE, "Degraded", "QueueNotFound"),
    (Problem.MISSING, "Progressing", "QueueNotReady"),
    (Problem.UNREACHABLE, "Degraded", "BrokerUnreachable"),
    (Problem.REJECTED, "Degraded", "BrokerRejected"),
])
def test_failures(defaulted: Defaulted, problem: Problem, phase: str, reason: str) -> None:
    st = consumergroups.status(owner=OWNER, spec=spec(defaulted), endpoint_url=None, stats=None,
                               failure=Failure(problem=problem, message="m"), previous=[],
                               now=NOW)
    true = [(c["type"], c["reason"]) for c in st["conditions"] if c["status"] == "True"]
    assert true == [(kind, reason) for kind in KSTATUS_TWIN[phase]]
    assert "lag" not in st and "endpoint" not in st


def test_deletion_policy_decides_whether_the_broker_is_called() -> None:
    assert deletion.first_step(DeletionPolicy.DELETE) is deletion.Step.DELETE_ON_BROKER
    assert deletion.first_step(DeletionPolicy.RETAIN) is deletion.Step.RELEASE


@pytest.mark.parametrize(("problem", "attempt", "step"), [
    (None, 0, deletion.Step.RELEASE),
    (Problem.MISSING, 0, deletion.Step.RELEASE),
    (Problem.UNREACHABLE, 0, deletion.Step.RETRY),
    (Problem.UNREACHABLE, 3, deletion.Step.RETRY),
    (Problem.UNREACHABLE, 4, deletion.Step.GIVE_UP),
    (Problem.REJECTED, 4, deletion.Step.GIVE_UP),
])
def test_finalizer_retries_are_bounded(problem: Problem | None, attempt: int,
                                       step: deletion.Step) -> None:
    failure = Failure(problem=problem, message="m") if problem else None
    assert deletion.after(failure, attempt, max_attempts=5) is step


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff.ceiling(a, 1.0, 5.0) for a in range(5)] == [1, 2, 4, 5, 5]


@pytest.mark.parametrize(("text", "ms"), [("250ms", 250), ("30s", 30_000), ("1.5s", 1500),
                                          ("1h30m", 5_400_000), ("168h", 604_800_000)])
def test_durations(text: str, ms: int) -> None:
    assert durations.to_ms(text) == ms


@pytest.mark.parametrize("text", ["", "5", "5x", "s5", "1h 2m"])
def test_bad_durations_raise(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        durations.to_ms(text)


@pytest.mark.parametrize(("ms", "text"), [(5, "5ms"), (1500, "1.5s"), (60_000, "1m"),
                                          (3_661_000, "1h1m1s")])
def test_readable_durations(ms: int, text: str) -> None:
    assert durations.from_ms(ms) == text
