"""Which rights each route and WebSocket frame needs (the auth middleware checks routes).

The WebSocket asks `frame_rights` for each frame. A refusal is an ApiError: 403
forbidden, or 429 rate_limited with Retry-After (keyring.Keyring).
"""

from __future__ import annotations

import time

from aiohttp import web

from ferry.broker.models import WsFrame, WsUnsubscribe
from ferry.broker.transport.runtime import Runtime
from ferry.broker.transport.tokens import Grant, Right

GRANT = web.RequestKey("ferry_grant", Grant)  # the request's token's grant (with --token-file)

Q = "/v1/queues/{queue}"
G = Q + "/groups/{group}"
ANY_TOKEN: frozenset[Right] = frozenset()  # any known token may
ADMIN = frozenset({Right.ADMIN})
READ = frozenset({Right.READ})
CONSUME = frozenset({Right.CONSUME})
PUBLISH = frozenset({Right.PUBLISH})
# A consumer reads its group's and queue's settings (its lease time) when it starts.
STATS = frozenset({Right.READ, Right.CONSUME})

# (method, canonical path) -> the rights of which a token needs one (admin has them all).
# A route missing here needs admin (tests/unit/test_broker_rights.py lists every route).
ROUTE_RIGHTS: dict[tuple[str, str], frozenset[Right]] = {
    ("GET", "/v1/queues"): READ,  # lists only the queues the token covers
    ("PUT", Q): ADMIN,
    ("GET", Q): STATS,
    ("DELETE", Q): ADMIN,
    ("POST", Q + "/messages"): PUBLISH,
    ("GET", Q + "/messages"): READ,
    ("GET", Q + "/messages/{id}"): READ,
    ("PATCH", Q + "/messages/{id}"): ADMIN,
    ("DELETE", Q + "/messages/{id}"): ADMIN,
    ("POST", Q + "/purge"): ADMIN,
    ("PUT", G): ADMIN,
    ("GET", G): STATS,
    ("DELETE", G): ADMIN,
    ("POST", G + "/receive"): CONSUME,
    ("POST", G + "/ack"): CONSUME,
    ("POST", G + "/nack"): CONSUME,
    ("POST", G + "/extend"): CONSUME,
    ("GET", G + "/stream"): CONSUME,
    ("GET", G + "/dead"): READ,
    ("POST", G + "/dead/redrive"): ADMIN,
    ("POST", G + "/purge"): ADMIN,
    ("GET", "/v1/stats/stream"): READ,  # the queues the token covers
    ("GET", "/v1/ws"): ANY_TOKEN,  # each frame is checked (frame_rights)
    ("GET", "/metrics"): ANY_TOKEN,
    ("GET", "/openapi.json"): ANY_TOKEN,
}


def route_rights(request: web.Request) -> frozenset[Right]:
    """The rights of which the request's route needs one (no route: any token, then 404)."""
    resource = request.match_info.route.resource
    if resource is None:
        return ANY_TOKEN
    method = "GET" if request.method == "HEAD" else request.method
    return ROUTE_RIGHTS.get((method, resource.canonical), ADMIN)


# A WebSocket frame's rights by op, as its HTTP twin's (unsubscribe: its own subscription).
FRAME_RIGHTS: dict[str, frozenset[Right]] = {
    "publish": PUBLISH, "subscribe": CONSUME, "ack": CONSUME, "nack": CONSUME,
    "extend": CONSUME, "browse": READ, "cancel": ADMIN, "purge": ADMIN, "unsubscribe": ANY_TOKEN,
}


def frame_rights(frame: WsFrame) -> frozenset[Right]:
    return FRAME_RIGHTS[frame.op]


def check_frame(rt: Runtime, grant: Grant | None, frame: WsFrame) -> None:
    """Charge a WebSocket frame to its connection's token and check its rights: raise
    the refusal (answered as the frame's error reply; the connection stays usable)."""
    if rt.tokens is None or grant is None:
        return
    queue = None if isinstance(frame, WsUnsubscribe) else frame.queue
    refusal = rt.tokens.check(grant, frame_rights(frame), queue, time.monotonic())
    if refusal is not None:
        raise refusal


def grant_of(request: web.Request) -> Grant | None:
    """The grant of the request's token (None: the broker runs without --token-file)."""
    return request.get(GRANT)
