"""Wire models of the broker's HTTP/JSON and WebSocket API.

One source of truth for the server (transport), the client and the OpenAPI
document: both sides parse and build these models, never raw dicts.

Names: queue and group names are DNS-label-like (they become Kubernetes
object names too). Durations on the wire are integer milliseconds.

Every number a client sends has a bound here, checked before anything reaches
the core or the store (docs/broker.md's table of bounds is generated from these
models: `python -m ferry.broker.bounds`). Requests are parsed strictly (`parse`):
"5" is not an int, "yes" not a bool, and NaN/Infinity are refused; 2.0 is the
integer 2, as JSON Schema (and so the OpenAPI document) has it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ferry.kit.tracing import TRACEPARENT_PATTERN, valid_traceparent

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
CONSUMER_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_WAIT_MS = 60_000  # longest long poll (receive, group stats with wait_ms)

DAY_MS = 24 * 3600 * 1000
# Retention, delays and backoff: ten years is "forever" for a queue, and keeps
# now + delay far inside SQLite's (and every client's) 64-bit integers.
MAX_DURATION_MS = 3650 * DAY_MS
MAX_LEASE_MS = 12 * 3600 * 1000  # visibility timeouts (as SQS): a longer lease is a lost consumer
MAX_DEDUP_WINDOW_MS = 7 * DAY_MS  # the dedup index holds every id published within the window
MAX_BATCH = 10_000  # messages per publish, receipts per settle, ids per redrive
PAGE_MAX = 1000  # messages or dead letters in one page (limit=)
CURSOR_PATTERN = "^[0-9]{1,19}$"  # a page cursor: the last seq the page before looked at
MAX_SEQ = 2**53 - 1  # WebSocket frame numbers: exact in every JSON client (JavaScript too)
MAX_FILTER_CONDITIONS = 16  # header conditions of each kind (match, prefix) in a group's filter



def whole_number(value: object) -> object:
    """JSON Schema's integer: 2.0 is the integer 2 (clients and the OpenAPI document agree);
    2.5, "2" and true stay errors under strict parsing."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WHOLE = BeforeValidator(whole_number)  # on every integer a request carries
Name = Annotated[str, Field(pattern=NAME_PATTERN, description="lowercase DNS label, <= 63 chars")]
ConsumerName = Annotated[str, Field(pattern=CONSUMER_PATTERN)]
Millis = Annotated[int, Field(ge=0, le=MAX_DURATION_MS), WHOLE]
PositiveMillis = Annotated[int, Field(gt=0, le=MAX_DURATION_MS), WHOLE]
LeaseMillis = Annotated[int, Field(gt=0, le=MAX_LEASE_MS), WHOLE]
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ), WHOLE]
Receipt = Annotated[str, Field(min_length=1, max_length=128)]
MessageId = Annotated[str, Field(min_length=1, max_length=32)]
Cursor = Annotated[str, Field(pattern=CURSOR_PATTERN)]
MaxDeliveries = Annotated[int, Field(ge=1, le=1000), WHOLE]  # queues' default and groups'


def _traceparent(value: str) -> str:
    if not valid_traceparent(value):
        raise ValueError("not W3C trace context: 00-<32 hex trace id>-<16 hex parent id>-"
                         "<2 hex flags>, lowercase, ids not all zeros")
    return value


# The pattern has look-aheads (ids not all zeros), which pydantic's regex engine lacks:
# the schema states it, the validator checks it (with Python's re).
Traceparent = Annotated[str, Field(json_schema_extra={"pattern": TRACEPARENT_PATTERN},
                                   description="W3C trace context (version 00): stored in "
                                   "each message's headers unless the message sets its own "
                                   "traceparent"), AfterValidator(_traceparent)]
# A key is a text column in PostgreSQL, which cannot hold U+0000: refused on every engine.
MessageKey = Annotated[str, Field(max_length=256, pattern=r"^[^\x00]*$",
                                  description="no U+0000")]


class Model(BaseModel):
    """Strict about unknown fields so a typo is a 400, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], raw: bytes | bytearray | str) -> M:
    """A request body as `model`, strictly: JSON types must match the fields' types."""
    return model.model_validate_json(raw, strict=True)


# How clients read the broker's answers: a field they do not know is ignored, not an
# error, so a broker upgraded before its clients (a rolling upgrade) may add fields to
# its answers. Requests stay strict (Model: a typo is a 400).
ANSWER_EXTRA: Final = "ignore"


def parse_answer(model: type[M], raw: bytes | bytearray | str) -> M:
    """A broker's answer as `model`, ignoring fields this client does not know."""
    return model.model_validate_json(raw, extra=ANSWER_EXTRA)


# --- errors ------------------------------------------------------------------


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    INVALID_NAME = "invalid_name"
    QUEUE_NOT_FOUND = "queue_not_found"
    GROUP_NOT_FOUND = "group_not_found"
    MESSAGE_NOT_FOUND = "message_not_found"
    MESSAGE_TOO_LARGE = "message_too_large"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    CONFLICT = "conflict"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"  # a known token without the right (or the queue) for the request
    RATE_LIMITED = "rate_limited"  # over the token's rate=N/s: retry after Retry-After
    UNAVAILABLE = "unavailable"
    QUEUE_FULL = "queue_full"
    # The store went away while committing the request: it may or may not have happened
    # (never a 503, which says nothing did). Retry a publish with its dedup ids.
    OUTCOME_UNKNOWN = "outcome_unknown"


class ErrorDetail(Model):
    code: ErrorCode
    message: str


class ErrorBody(Model):
    error: ErrorDetail


class WsErrorDetail(ErrorDetail):
    """A WebSocket error reply's error: the HTTP error's, and when to come back."""

    retry_after_ms: int | None = Field(
        None, ge=0,
        description="where HTTP would answer Retry-After (rate_limited, queue_full, "
                    "unavailable): the same wait, in milliseconds")


# The HTTP status of every code: the server answers with it, and the client gives a
# WebSocket reply (a code, no status) the status HTTP would have had.
STATUS_OF_CODE: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.INVALID_NAME: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.QUEUE_NOT_FOUND: 404,
    ErrorCode.GROUP_NOT_FOUND: 404,
    ErrorCode.MESSAGE_NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.MESSAGE_TOO_LARGE: 413,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.QUEUE_FULL: 429,
    ErrorCode.OUTCOME_UNKNOWN: 500,
}


# --- queues and groups ------------------------------------------------------


class StartAt(StrEnum):
    EARLIEST = "earliest"
    LATEST = "latest"


class Overflow(StrEnum):
    REJECT_PUBLISH = "reject_publish"
    DROP_OLDEST = "drop_oldest"


class QueueSettings(Model):
    """PUT /v1/queues/{queue}. Every field has a default, so `{}` is valid."""

    max_message_bytes: Annotated[int, Field(gt=0, le=16 * 1024 * 1024), WHOLE] = 1024 * 1024
    retention_ms: PositiveMillis = 7 * DAY_MS
    visibility_timeout_ms: LeaseMillis = 30_000
    max_deliveries: MaxDeliveries = 5
    dedup_window_ms: Annotated[int, Field(ge=0, le=MAX_DEDUP_WINDOW_MS), WHOLE] = 5 * 60 * 1000
    fair: bool = Field(False, description="round-robin delivery across message keys")
    max_depth: Annotated[int, Field(ge=1, le=1_000_000_000), WHOLE] | None = Field(
        None, description="most messages stored at once; unbounded when unset")
    overflow: Overflow = Field(
        Overflow.REJECT_PUBLISH,
        description="at max_depth: reject_publish (429 queue_full, nothing stored) or "
                    "drop_oldest (the oldest stored messages make room, counted)")


class Backoff(Model):
    """Delay before a nacked message is visible again: initial * multiplier**(n-1), capped."""

    initial_ms: Millis = 1000
    multiplier: Annotated[float, Field(ge=1.0, le=100.0)] = 2.0
    max_ms: Millis = 5 * 60 * 1000


# Header names and values as a filter names them (any text, as message headers).
HeaderName = Annotated[str, Field(min_length=1, max_length=256)]
HeaderValue = Annotated[str, Field(max_length=1024)]
Conditions = Annotated[dict[HeaderName, HeaderValue], Field(max_length=MAX_FILTER_CONDITIONS)]


class HeaderFilter(Model):
    """Which messages a group gets: those whose headers meet every condition. The others
    are skipped for the group (counted in filtered_total, never delivered, settled for it
    as if acked)."""

    # "At least one condition" in the schema too, so the OpenAPI document (and every
    # client generated from it) knows an empty filter is a 400.
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["match"], "properties": {"match": {"minProperties": 1}}},
        {"required": ["prefix"], "properties": {"prefix": {"minProperties": 1}}},
    ]})

    match: Conditions = Field(default_factory=dict, description="header name -> exact value")
    prefix: Conditions = Field(default_factory=dict,
                               description="header name -> what its value starts with")

    @model_validator(mode="after")
    def _conditions(self) -> HeaderFilter:
        if not self.match and not self.prefix:
            raise ValueError("a filter needs at least one condition (match or prefix)")
        return self


class GroupSettings(Model):
    """PUT /v1/queues/{queue}/groups/{group}. Unset fields inherit the queue's defaults."""

    start_at: StartAt = StartAt.EARLIEST
    visibility_timeout_ms: LeaseMillis | None = None
    max_deliveries: MaxDeliveries | None = None
    nack_backoff: Backoff = Backoff()
    filter: HeaderFilter | None = Field(
        None, description="deliver only messages whose headers match; a change applies to "
                          "messages the group has not settled yet")


class ConsumerInfo(Model):
    name: str
    last_seen_ms: int = Field(description="epoch milliseconds of the consumer's last request")
    in_flight: int


class GroupStats(Model):
    queue: str
    group: str
    settings: GroupSettings
    depth: int = Field(description="messages ready for delivery now")
    in_flight: int = Field(description="leased and not yet acked")
    delayed: int = Field(description="waiting for their not-before time or nack backoff")
    dead: int = Field(description="in the group's dead-letter queue")
    lag: int = Field(description="not yet acked or dead-lettered: depth + in_flight + delayed")
    backlog: int = Field(description="depth + in_flight: what more consumers can work off "
                                     "(the figure autoscalers scale on)")
    oldest_ready_age_ms: int
    acked_total: int
    filtered_total: int = Field(0, description="messages the group's filter skipped "
                                               "(since the broker started)")
    consumers: list[ConsumerInfo]
    restoring: bool = Field(
        False, description="a restart is still reading the queue's stored messages back: "
                           "the figures count only those read so far")


class QueueStats(Model):
    queue: str
    settings: QueueSettings
    messages: int = Field(description="messages stored (not yet acked by every group)")
    published_total: int
    groups: list[GroupStats]
    restoring: bool = Field(
        False, description="a restart is still reading the queue's stored messages back: "
                           "messages counts only those read so far")


class QueueList(Model):
    queues: list[QueueStats]


class StatsEvent(Model):
    """One `stats` event of GET /v1/stats/stream: every queue's stats at one moment."""

    at_ms: int = Field(description="epoch milliseconds the figures were read at (rates: the "
                                   "change of published_total and acked_total between events)")
    queues: list[QueueStats]


# --- publishing --------------------------------------------------------------


class OutgoingMessage(Model):
    body: Any
    key: MessageKey | None = None
    priority: Annotated[int, Field(ge=0, le=9), WHOLE] = Field(0, description="higher first")
    delay_ms: Millis = 0
    dedup_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    headers: dict[str, str] = Field(
        default_factory=dict, description="counted with the body against max_message_bytes"
    )


class PublishRequest(Model):
    messages: Annotated[list[OutgoingMessage], Field(min_length=1, max_length=MAX_BATCH)]


class PublishResponse(Model):
    ids: list[str] = Field(description="one id per message; a repeated dedup_id gives the first id")


# --- consuming ---------------------------------------------------------------


class ReceiveRequest(Model):
    consumer: ConsumerName
    max: Annotated[int, Field(ge=1, le=1000), WHOLE] = 1
    wait_ms: Annotated[int, Field(ge=0, le=MAX_WAIT_MS), WHOLE] = 0
    visibility_timeout_ms: LeaseMillis | None = None


class Delivery(Model):
    id: str
    body: Any
    key: str | None
    priority: int
    headers: dict[str, str]
    delivery_count: int
    receipt: str = Field(description="valid for this delivery only")


class ReceiveResponse(Model):
    messages: list[Delivery]


class ReceiptsRequest(Model):
    receipts: Annotated[list[Receipt], Field(min_length=1, max_length=MAX_BATCH)]


class NackRequest(ReceiptsRequest):
    delay_ms: Millis | None = Field(None, description="None: the group's nack backoff")


class ExtendRequest(ReceiptsRequest):
    visibility_timeout_ms: LeaseMillis


class ReceiptStatus(StrEnum):
    OK = "ok"
    STALE = "stale"  # the lease expired and the message moved on
    UNKNOWN = "unknown"  # not a receipt of this group


class ReceiptResult(Model):
    receipt: str
    status: ReceiptStatus


class ReceiptsResponse(Model):
    results: list[ReceiptResult]


# --- dead letters and inspection ---------------------------------------------


class DeadLetter(Model):
    id: str
    body: Any
    key: str | None
    headers: dict[str, str]
    delivery_count: int
    dead_at_ms: int
    reason: str


class DeadList(Model):
    messages: list[DeadLetter]
    next_cursor: str | None


class RedriveRequest(Model):
    ids: Annotated[list[MessageId], Field(max_length=MAX_BATCH)] | None = Field(
        None, description="None: every dead letter of the group"
    )


class RedriveResponse(Model):
    redriven: int


class PriorityChange(Model):
    """PATCH /v1/queues/{queue}/messages/{id}: deliveries still to come use the new priority."""

    priority: Annotated[int, Field(ge=0, le=9), WHOLE]


class MessageGroupState(StrEnum):
    READY = "ready"
    DELAYED = "delayed"
    IN_FLIGHT = "in_flight"
    ACKED = "acked"
    DEAD = "dead"


class MessageGroupInfo(Model):
    group: str
    state: MessageGroupState
    delivery_count: int


class MessageInfo(Model):
    id: str
    queue: str
    key: str | None
    priority: int
    headers: dict[str, str]
    body: Any
    published_at_ms: int
    groups: list[MessageGroupInfo]


class MessagePage(Model):
    """Stored messages of a queue, oldest first, as GET .../messages pages them (a peek)."""

    messages: list[MessageInfo]
    next_cursor: str | None = Field(
        description="where the next page starts; null at the end (a page may be short, even "
                    "empty, and still have one: each request scans a bounded stretch)")


class BrowseQuery(Model):
    """GET /v1/queues/{queue}/messages: which stored messages, a page at a time."""

    limit: Annotated[int, Field(ge=1, le=PAGE_MAX), WHOLE] = 100
    cursor: Cursor | None = Field(None, description="next_cursor of the page before")
    group: Name | None = Field(
        None, description="only messages this group is not done with (not acked)")
    state: MessageGroupState | None = Field(
        None, description="only messages in this state for `group` (needs group)")
    key: MessageKey | None = Field(None, description="only messages with this key")
    priority: Annotated[int, Field(ge=0, le=9), WHOLE] | None = Field(
        None, description="only messages of this priority (as deliveries use it now)")

    @model_validator(mode="after")
    def _state_needs_group(self) -> BrowseQuery:
        if self.state is not None and self.group is None:
            raise ValueError("state needs group: a state is a group's")
        return self


class PurgeResponse(Model):
    purged: int = Field(description="messages that were ready and went (from at least "
                                    "one group, for a queue's purge)")


# --- WebSocket transport (GET /v1/ws) -----------------------------------------
# One connection carries many requests; each client frame has a client-chosen
# `seq` echoed in its reply, so publishes and acks can be pipelined without a
# round trip each. Frames are JSON text (orjson on both sides).


class WsPublish(Model):
    op: Literal["publish"]
    seq: Seq
    queue: Name
    messages: Annotated[list[OutgoingMessage], Field(min_length=1, max_length=MAX_BATCH)]
    traceparent: Traceparent | None = None


class WsSubscribe(Model):
    """Push deliveries for (queue, group) to this connection, at most max_in_flight unacked."""

    op: Literal["subscribe"]
    seq: Seq
    queue: Name
    group: Name
    consumer: ConsumerName
    max_in_flight: Annotated[int, Field(ge=1, le=10_000), WHOLE] = 100
    visibility_timeout_ms: LeaseMillis | None = None


class WsSettle(Model):
    op: Literal["ack", "nack", "extend"]
    seq: Seq
    queue: Name
    group: Name
    receipts: Annotated[list[Receipt], Field(min_length=1, max_length=MAX_BATCH)]
    delay_ms: Millis | None = None
    visibility_timeout_ms: LeaseMillis | None = None


class WsBrowse(BrowseQuery):
    """A page of stored messages, as GET /v1/queues/{queue}/messages answers it."""

    op: Literal["browse"]
    seq: Seq
    queue: Name


class WsCancel(Model):
    """DELETE /v1/queues/{queue}/messages/{id}: gone for every group."""

    op: Literal["cancel"]
    seq: Seq
    queue: Name
    id: MessageId


class WsPurge(Model):
    """POST .../purge: the ready messages of one group, or of every group without one."""

    op: Literal["purge"]
    seq: Seq
    queue: Name
    group: Name | None = None


class WsUnsubscribe(Model):
    """Stop pushing deliveries of subscription `sub` (a consumer that was told to stop).

    What was already pushed stays leased to this connection, to be acked or nacked, instead
    of being handed back; the reply comes after the subscription's last deliver frame.
    """

    op: Literal["unsubscribe"]
    seq: Seq
    sub: Seq = Field(description="seq of the subscribe frame to stop")


WsFrame = (WsPublish | WsSubscribe | WsSettle | WsBrowse | WsCancel | WsPurge
           | WsUnsubscribe)
WsRequest = Annotated[WsFrame, Field(discriminator="op")]


class WsReply(Model):
    """Answer to the client frame with the same seq: exactly one of the result fields is set."""

    op: Literal["reply"] = "reply"
    seq: int
    ids: list[str] | None = None
    results: list[ReceiptResult] | None = None
    page: MessagePage | None = None
    cancelled: str | None = Field(None, description="the id a cancel frame removed")
    purged: int | None = None
    error: WsErrorDetail | None = None


class WsDeliver(Model):
    op: Literal["deliver"] = "deliver"
    sub: int = Field(description="seq of the subscribe frame this belongs to")
    messages: list[Delivery]
