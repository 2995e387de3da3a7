"""One memory budget shared by every request: bodies read and delivery batches built.

Request bodies are parsed into models several times their size, and a batch of
deliveries is copied into its response, so the broker's peak memory follows
what is held at once, not what one request may carry. Each request reserves
its body (and, for receive and dead-letter pages, one batch) before anything is
read; a request that does not fit while others hold the budget is answered
503 with Retry-After before it touches anything, so nothing of it happened.
"""

from __future__ import annotations

RETRY_AFTER_S = 1


class MemoryBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.refused = 0  # reservations turned down (requests answered 503)

    def try_take(self, n: int) -> bool:
        """Reserve n bytes; one reservation alone always fits (the request limits bound it)."""
        if self.used and self.used + n > self.limit:
            self.refused += 1
            return False
        self.used += n
        return True

    def release(self, n: int) -> None:
        self.used -= n
