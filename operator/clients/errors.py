"""Our exceptions: foreign errors (aiohttp, the broker client) are translated once, here."""

from __future__ import annotations

from ferry.operator.identity import Problem


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"

    @property
    def transient(self) -> bool:
        """No answer, too many requests or a server error: worth trying again soon, not a
        fault of the request (a 4xx other than 429 would fail the same way again)."""
        return self.status == 0 or self.status == 429 or self.status >= 500


class KubeNotFound(KubeError):  # noqa: N818 - reads as the condition it names
    pass


class BrokerTrouble(Exception):  # noqa: N818 - reads as the condition it names
    """A broker call failed, for the reconcilers to judge by its problem."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem, self.message = problem, message
