"""Bearer tokens (--token-file): every route but the health checks and the console's static
files needs one when set.

A known token is charged one request of its rate (429), then the route's rights are
checked (403, rights.ROUTE_RIGHTS); its grant is kept on the request (rights.GRANT)
for handlers and the WebSocket's frames.
"""

from __future__ import annotations

import time

from aiohttp import web

from ferry.broker.models import ErrorCode
from ferry.broker.transport import console
from ferry.broker.transport.errors import Handler, error_response
from ferry.broker.transport.rights import GRANT, route_rights
from ferry.broker.transport.runtime import RUNTIME

# The console's files are open: the page asks for the token and sends it with each request.
OPEN_PATHS = frozenset({"/healthz", "/readyz", *console.OPEN})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    keyring = request.app[RUNTIME].tokens
    if keyring is None or request.path in OPEN_PATHS:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    grant = keyring.identify(token.strip()) if scheme.lower() == "bearer" and token else None
    if grant is None:
        keyring.refusals[ErrorCode.UNAUTHORIZED] += 1
        resp = error_response(
            ErrorCode.UNAUTHORIZED,
            "missing bearer token" if not header else "the bearer token is not accepted",
        )
        resp.headers["WWW-Authenticate"] = 'Bearer realm="ferry"'
        return resp
    refusal = keyring.check(grant, route_rights(request), request.match_info.get("queue"),
                            time.monotonic())
    if refusal is not None:
        raise refusal
    request[GRANT] = grant
    return await handler(request)
