"""The one retry schedule: exponential, capped (pure, no clock, no randomness of its own)."""

from __future__ import annotations


def ceiling(attempt: int, base: float, cap: float) -> float:
    """The wait before retry number `attempt` (0-based): base * 2**attempt, at most cap.

    Callers that retry against a shared server add jitter below this ceiling
    (ferry.broker.client.retrying); callers that wait alone use it as is.
    """
    return float(min(cap, base * 2.0**attempt))
