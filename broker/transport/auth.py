"""Bearer tokens (--token-file): every route but the health checks and the console's static
files needs one when set."""

from __future__ import annotations

import hmac

from aiohttp import web

from ferry.broker.models import ErrorCode
from ferry.broker.transport import console
from ferry.broker.transport.errors import Handler, error_response
from ferry.broker.transport.runtime import RUNTIME

# The console's files are open: the page asks for the token and sends it with each request.
OPEN_PATHS = frozenset({"/healthz", "/readyz", *console.PATHS})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    tokens = request.app[RUNTIME].tokens
    if tokens is None or request.path in OPEN_PATHS:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token and _known(token.strip(), tokens):
        return await handler(request)
    resp = error_response(
        ErrorCode.UNAUTHORIZED,
        "missing bearer token" if not header else "the bearer token is not accepted",
    )
    resp.headers["WWW-Authenticate"] = 'Bearer realm="ferry"'
    return resp


def _known(token: str, tokens: frozenset[str]) -> bool:
    found = False
    for t in tokens:  # compare against every token: timing says nothing about which matched
        found |= hmac.compare_digest(token.encode(), t.encode())
    return found
