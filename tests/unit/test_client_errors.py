"""Errors are translated once: status and server code become NotFound/Unavailable/BrokerError."""

import pytest

from ferry.broker.client import BrokerError, Forbidden, NotFound, RateLimited, Unavailable
from ferry.broker.client.errors import error_for, error_from_response, is_retryable, retry_after
from ferry.broker.models import ErrorBody, ErrorCode, ErrorDetail

pytestmark = pytest.mark.unit


def _body(code: ErrorCode, message: str) -> bytes:
    return ErrorBody(error=ErrorDetail(code=code, message=message)).model_dump_json().encode()


def test_404_becomes_not_found_with_the_servers_code_and_message() -> None:
    error = error_from_response(404, _body(ErrorCode.QUEUE_NOT_FOUND, "queue 'x' not found"))
    assert isinstance(error, NotFound)
    assert (error.status, error.code, error.message) == (
        404,
        "queue_not_found",
        "queue 'x' not found",
    )
    assert not is_retryable(error)


def test_503_becomes_unavailable_and_is_retryable() -> None:
    error = error_from_response(503, _body(ErrorCode.UNAVAILABLE, "draining"))
    assert isinstance(error, Unavailable)
    assert is_retryable(error)


def test_other_4xx_is_a_plain_broker_error() -> None:
    error = error_from_response(400, _body(ErrorCode.INVALID_NAME, "bad name 'A'"))
    assert type(error) is BrokerError
    assert error.code == ErrorCode.INVALID_NAME
    assert "bad name 'A'" in str(error)


def test_a_body_that_is_not_fetrys_error_shape_still_gives_a_message() -> None:
    error = error_from_response(502, b"<html>Bad Gateway</html>", "Bad Gateway")
    assert error.status == 502
    assert "Bad Gateway" in error.message
    assert is_retryable(error)


@pytest.mark.parametrize(
    ("code", "kind", "status"),
    [
        (ErrorCode.GROUP_NOT_FOUND, NotFound, 404),
        (ErrorCode.UNAVAILABLE, Unavailable, 503),
        (ErrorCode.PAYLOAD_TOO_LARGE, BrokerError, 413),
        (ErrorCode.BAD_REQUEST, BrokerError, 400),
        (ErrorCode.FORBIDDEN, Forbidden, 403),
        (ErrorCode.RATE_LIMITED, RateLimited, 429),
        (ErrorCode.QUEUE_FULL, BrokerError, 429),
    ],
)
def test_websocket_errors_get_the_status_http_would_have(
    code: ErrorCode, kind: type[BrokerError], status: int
) -> None:
    error = error_for(None, ErrorDetail(code=code, message="m"))
    assert type(error) is kind
    assert error.status == status


def test_403_and_429_are_final_and_429_keeps_retry_after() -> None:
    forbidden = error_from_response(403, _body(ErrorCode.FORBIDDEN, "needs publish"))
    assert isinstance(forbidden, Forbidden) and not is_retryable(forbidden)
    limited = error_from_response(429, _body(ErrorCode.RATE_LIMITED, "slow down"),
                                  retry_after_s=retry_after("2"))
    assert isinstance(limited, RateLimited) and not is_retryable(limited)
    assert limited.retry_after == 2.0
    assert retry_after(None) is None and retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
