"""Errors the core raises; the transport maps each to an HTTP status once."""

from __future__ import annotations

from ferry.broker.models import ErrorCode


class CoreError(Exception):
    """A request the state machine refuses; `code` is the wire error code."""

    code: ErrorCode = ErrorCode.BAD_REQUEST

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class QueueNotFoundError(CoreError):
    code = ErrorCode.QUEUE_NOT_FOUND


class GroupNotFoundError(CoreError):
    code = ErrorCode.GROUP_NOT_FOUND


class MessageNotFoundError(CoreError):
    code = ErrorCode.MESSAGE_NOT_FOUND



class QueueFullError(CoreError):
    """The queue holds max_depth messages and its overflow policy rejects publishes."""

    code = ErrorCode.QUEUE_FULL


class ConflictError(CoreError):
    code = ErrorCode.CONFLICT


class UnavailableError(CoreError):
    code = ErrorCode.UNAVAILABLE
