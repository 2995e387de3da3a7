"""When to try a broker call again and how long to wait first (pure schedule + one loop)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ferry.broker.client.errors import BrokerError, is_retryable
from ferry.kit.backoff import ceiling

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with equal jitter: retry n waits between c/2 and c, c = base * 2**n.

    The random half spreads the retries of many clients that lost the same broker at the
    same moment; the fixed half keeps the whole schedule (7.75 s at most, 3.9 s at least
    with the defaults) long enough to ride out a broker restart.
    """

    retries: int = 5
    base: float = 0.25
    cap: float = 5.0

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number `attempt` (0-based)."""
        return ceiling(attempt, self.base, self.cap)

    def delays(self, rng: random.Random | None = None) -> list[float]:
        """One wait per retry; no side effects beyond drawing from `rng`."""
        draw = (rng or random).uniform
        return [draw(self.ceiling(n) / 2, self.ceiling(n)) for n in range(self.retries)]


def pause(delay: float, error: BrokerError) -> float:
    """The wait before retrying after `error`: the schedule's `delay`, or the broker's
    retry_after (Retry-After over HTTP, retry_after_ms over the WebSocket) when longer."""
    return delay if error.retry_after is None else max(delay, error.retry_after)


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `attempt` until it succeeds, fails for good (4xx) or runs out of retries,
    waiting before each retry as long as the schedule says or the broker asked (`pause`).

    The caller makes `attempt` safe to repeat (publish carries dedup ids; ack/nack/extend
    of a receipt twice is answered per receipt), so a retry never duplicates work.
    """
    for delay in policy.delays():
        try:
            return await attempt()
        except BrokerError as error:
            if not is_retryable(error):
                raise
            wait = pause(delay, error)
        await sleep(wait)
    return await attempt()
