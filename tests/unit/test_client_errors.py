"""Errors are translated once: status and server code become NotFound/Unavailable/BrokerError."""

import pytest

from ferry.broker.client import BrokerError, Forbidden, NotFound, RateLimited, Unavailable
from ferry.broker.client.errors import (
    error_for,
    error_from_response,
    error_of_reply,
    is_retryable,
    retry_after,
)
from ferry.broker.models import ErrorBody, ErrorCode, ErrorDetail, WsReply
from ferry.broker.transport.errors import error_response
from ferry.broker.transport.socket_api import error_reply

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


@pytest.mark.parametrize("given", [None, 3], ids=["the code's", "a refusal's own"])
@pytest.mark.parametrize("code", list(ErrorCode))
def test_a_websocket_error_reply_gives_the_exception_and_retry_after_of_its_http_answer(
    code: ErrorCode, given: int | None
) -> None:
    """One contract: the broker's HTTP answer and WebSocket reply for the same refusal
    become the same exception with the same retry_after (Retry-After / retry_after_ms)."""
    http = error_response(code, "m", retry_after=given)
    header = http.headers.get("Retry-After")
    assert isinstance(http.body, bytes)
    over_http = error_from_response(http.status, http.body, retry_after_s=retry_after(header))
    reply = WsReply.model_validate_json(error_reply(7, code, "m", given))
    assert reply.seq == 7 and reply.error is not None
    assert reply.error.retry_after_ms == (None if header is None else int(header) * 1000)
    over_ws = error_of_reply(reply.error)
    assert type(over_ws) is type(over_http)
    assert (over_ws.status, over_ws.code, over_ws.retry_after) == (
        over_http.status, over_http.code, over_http.retry_after)



def test_replies_that_ask_to_come_back_say_when_and_others_say_nothing_of_it() -> None:
    for code, given in ((ErrorCode.QUEUE_FULL, None), (ErrorCode.UNAVAILABLE, None),
                        (ErrorCode.RATE_LIMITED, 2)):
        error = WsReply.model_validate_json(error_reply(1, code, "m", given)).error
        assert error is not None and error.retry_after_ms is not None
        assert error.retry_after_ms > 0
    assert b"retry_after_ms" not in error_reply(1, ErrorCode.FORBIDDEN, "m")
