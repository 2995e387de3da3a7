"""The retry schedule and loop: what is retried, how long it waits, when it gives up."""

import random

import pytest

from ferry.broker.client import BrokerError, NotFound, RetryPolicy, Unavailable
from ferry.broker.client.errors import unreachable
from ferry.broker.client.retrying import pause, with_retries
from ferry.broker.models import ErrorCode

pytestmark = pytest.mark.unit


def test_waits_grow_exponentially_within_equal_jitter_bounds_and_are_capped() -> None:
    policy = RetryPolicy(retries=8, base=0.25, cap=5.0)
    for seed in range(20):
        delays = policy.delays(random.Random(seed))
        assert len(delays) == 8
        for n, delay in enumerate(delays):
            ceiling = min(5.0, 0.25 * 2**n)
            assert ceiling / 2 <= delay <= ceiling
    assert policy.ceiling(10) == 5.0


def test_the_default_schedule_outlasts_a_few_seconds_of_broker_restart() -> None:
    # The fixed half of every wait adds up to this much at least.
    assert sum(RetryPolicy().ceiling(n) / 2 for n in range(5)) >= 3.5


class Flaky:
    def __init__(self, failures: list[BrokerError]) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


async def _no_sleep(_: float) -> None:
    return None


async def test_connection_errors_and_5xx_are_retried_until_success() -> None:
    attempt = Flaky(
        [
            unreachable("http://b", ConnectionRefusedError("refused")),
            Unavailable(503, ErrorCode.UNAVAILABLE, "draining"),
            BrokerError(500, ErrorCode.UNAVAILABLE, "boom"),
        ]
    )
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    assert await with_retries(attempt, RetryPolicy(retries=5), sleep=sleep) == "ok"
    assert attempt.calls == 4
    assert len(slept) == 3


async def test_4xx_is_not_retried() -> None:
    attempt = Flaky([NotFound(404, ErrorCode.QUEUE_NOT_FOUND, "no queue"), *[]])
    with pytest.raises(NotFound):
        await with_retries(attempt, RetryPolicy(retries=5), sleep=_no_sleep)
    assert attempt.calls == 1


async def test_gives_up_after_the_retry_budget_with_the_last_error() -> None:
    errors = [unreachable("http://b", ConnectionRefusedError(f"refused {n}")) for n in range(10)]
    attempt = Flaky(errors)
    with pytest.raises(Unavailable, match="refused 3"):
        await with_retries(attempt, RetryPolicy(retries=3), sleep=_no_sleep)
    assert attempt.calls == 4


def test_a_retry_waits_at_least_as_long_as_the_broker_asked() -> None:
    asked = Unavailable(503, ErrorCode.UNAVAILABLE, "memory budget taken", retry_after=1.0)
    assert pause(0.2, asked) == 1.0
    assert pause(3.0, asked) == 3.0  # the schedule's longer wait stands
    assert pause(0.2, Unavailable(503, ErrorCode.UNAVAILABLE, "draining")) == 0.2


async def test_the_loop_waits_the_brokers_retry_after_before_retrying() -> None:
    attempt = Flaky([Unavailable(503, ErrorCode.UNAVAILABLE, "busy", retry_after=2.5),
                     unreachable("http://b", ConnectionRefusedError("refused"))])
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    assert await with_retries(attempt, RetryPolicy(retries=5), sleep=sleep) == "ok"
    assert slept[0] == 2.5 and slept[1] <= RetryPolicy().ceiling(1)
