"""The client's exception tree: every failure of a broker call, translated once, here."""

from __future__ import annotations

from pydantic import ValidationError

from ferry.broker.models import (
    STATUS_OF_CODE,
    ErrorBody,
    ErrorCode,
    ErrorDetail,
    WsErrorDetail,
    parse_answer,
)

_NOT_FOUND_CODES = frozenset(
    {ErrorCode.QUEUE_NOT_FOUND, ErrorCode.GROUP_NOT_FOUND, ErrorCode.MESSAGE_NOT_FOUND}
)


class BrokerError(Exception):
    """A broker call failed; `code` is the server's machine-readable error code.

    `retry_after`: the seconds the broker asked the client to wait before trying again
    (HTTP's Retry-After, a WebSocket error reply's retry_after_ms), None when it did not
    say; a retried call waits at least that long (retrying.pause).
    """

    def __init__(self, status: int, code: ErrorCode | str, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.message} ({self.code}, HTTP {self.status})" if self.status else self.message


class NotFound(BrokerError):  # noqa: N818 - the contract's name
    """The queue, group or message does not exist."""


class Unavailable(BrokerError):  # noqa: N818 - the contract's name
    """The broker could not be reached or kept failing after every retry."""


class Forbidden(BrokerError):  # noqa: N818 - named for its status, like NotFound
    """The token lacks the right for this call, or its queues= globs miss the queue."""


class RateLimited(BrokerError):  # noqa: N818 - named for its code, like NotFound
    """Over the token's request rate (rate=N/s); `retry_after` says when to come back.

    Not retried by the client: like every 4xx (a full queue's 429 too) it is the
    caller's to handle, and a retry loop would only spend the token's rate.
    """


def error_for(status: int | None, detail: ErrorDetail,
              retry_after: float | None = None) -> BrokerError:
    """The exception for an error the server answered with; `status` is None on WebSocket."""
    if status is None:
        status = STATUS_OF_CODE.get(detail.code, 400)
    kind: type[BrokerError] = BrokerError
    if status == 404 or detail.code in _NOT_FOUND_CODES:
        kind = NotFound
    elif status == 503 or detail.code == ErrorCode.UNAVAILABLE:
        kind = Unavailable
    elif detail.code == ErrorCode.FORBIDDEN:
        kind = Forbidden
    elif detail.code == ErrorCode.RATE_LIMITED:
        kind = RateLimited
    return kind(status, detail.code, detail.message, retry_after)


def error_of_reply(detail: WsErrorDetail) -> BrokerError:
    """The exception for a WebSocket error reply: the one its HTTP answer would give, its
    retry_after_ms as the Retry-After seconds."""
    wait = None if detail.retry_after_ms is None else detail.retry_after_ms / 1000
    return error_for(None, detail, wait)


def retry_after(value: str | None) -> float | None:
    """A Retry-After header's seconds (None: absent, or an HTTP date Ferry never sends)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def error_from_response(status: int, body: bytes, reason: str = "",
                        retry_after_s: float | None = None) -> BrokerError:
    """Translate a non-2xx answer; a body that is not Ferry's error shape still gives a message."""
    try:
        detail = parse_answer(ErrorBody, body).error
    except ValidationError:
        text = body.decode("utf-8", "replace").strip()[:200] or reason or "no error body"
        fallback = ErrorCode.UNAVAILABLE if status >= 500 else ErrorCode.BAD_REQUEST
        detail = ErrorDetail(code=fallback, message=f"HTTP {status}: {text}")
    return error_for(status, detail, retry_after_s)


def unreachable(url: str, cause: BaseException) -> Unavailable:
    """The error for a broker that did not answer at all."""
    why = str(cause) or type(cause).__name__
    return Unavailable(0, ErrorCode.UNAVAILABLE, f"broker at {url} is unreachable: {why}")


def is_retryable(error: BrokerError) -> bool:
    """Connection failures (status 0) and 5xx may succeed on another attempt; 4xx never will."""
    return error.status == 0 or error.status >= 500
