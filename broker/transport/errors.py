"""One place that turns every failure into `{"error": {"code", "message"}}`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from pydantic import ValidationError

from ferry.broker.core import CoreError
from ferry.broker.models import STATUS_OF_CODE, ErrorCode
from ferry.broker.store import OutcomeUnknownError, StoreError
from ferry.broker.transport.memory import RETRY_AFTER_S

log = logging.getLogger("ferry.broker.transport")

_HTTP_CODES = {
    401: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.BAD_REQUEST,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    503: ErrorCode.UNAVAILABLE,
}


class ApiError(Exception):
    def __init__(self, code: ErrorCode, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after  # seconds: Retry-After, a WebSocket retry_after_ms

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def error_body(code: ErrorCode, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code.value, "message": message}})


# A full queue (maxDepth, overflow reject_publish) asks publishers to come back later, and
# so does every 503: nothing of the request happened (e.g. the memory budget was taken).
RETRY_AFTER_SECONDS = {ErrorCode.QUEUE_FULL: 1, ErrorCode.UNAVAILABLE: RETRY_AFTER_S}


def retry_after_s(code: ErrorCode, given: int | None = None) -> int | None:
    """When a client told `code` may come back, in whole seconds (None: the code says
    nothing of when): `given` (a refusal's own figure, ApiError.retry_after), else the
    code's. The one answer for HTTP's Retry-After and the WebSocket's retry_after_ms."""
    return RETRY_AFTER_SECONDS.get(code) if given is None else given


def error_response(code: ErrorCode, message: str, status: int | None = None,
                   retry_after: int | None = None) -> web.Response:
    retry = retry_after_s(code, retry_after)
    return web.Response(
        body=error_body(code, message), status=status or STATUS_OF_CODE[code],
        content_type="application/json",
        headers={"Retry-After": str(retry)} if retry is not None else None,
    )


def store_error(e: StoreError) -> tuple[ErrorCode, str]:
    """The code and message of a change the store did not make durable (HTTP and WebSocket)."""
    if isinstance(e, OutcomeUnknownError):
        return ErrorCode.OUTCOME_UNKNOWN, (
            f"the store went away while committing this request, so it may or may not have "
            f"happened: {e}")
    return ErrorCode.UNAVAILABLE, f"the store could not commit: {e}"


def describe(e: ValidationError) -> str:
    parts = [f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}"
             for err in e.errors()[:5]]
    more = e.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e.code, e.message, retry_after=e.retry_after)
    except CoreError as e:
        return error_response(e.code, e.message)
    except ValidationError as e:
        return error_response(ErrorCode.BAD_REQUEST, describe(e))
    except RequestPayloadError as e:  # a body that does not decode (bad gzip, cut short)
        # Nothing more to read (aiohttp would try, fail again and log it as unhandled);
        # the connection closes after this answer.
        request.content.feed_eof()
        why = " ".join(str(e).split())
        resp = error_response(ErrorCode.BAD_REQUEST, f"the request body cannot be read: {why}")
        resp.force_close()
        return resp
    except StoreError as e:
        return error_response(*store_error(e))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = _HTTP_CODES.get(e.status, ErrorCode.BAD_REQUEST)
        message = e.text or e.reason
        if e.status == 404:
            message = f"no route {request.method} {request.path}"
        resp = error_response(code, message, status=e.status)
        if "Allow" in e.headers:  # 405: say which methods the route takes (RFC 9110)
            resp.headers["Allow"] = e.headers["Allow"]
        return resp
    except Exception as e:  # a bug: say so in the usual shape, keep serving
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(
            ErrorCode.UNAVAILABLE, f"internal error ({type(e).__name__}); see the broker log",
            status=500,
        )
