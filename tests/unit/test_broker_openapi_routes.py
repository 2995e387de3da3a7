"""The broker's OpenAPI document lists exactly the routes the server registers."""

from __future__ import annotations

import re

import orjson
import pytest
from aiohttp import web

from ferry.broker.store.postgres import PgStore
from ferry.broker.transport import app, openapi
from ferry.broker.transport.keyring import Keyring
from ferry.broker.transport.tokens import parse_tokens

pytestmark = pytest.mark.unit


def _app(auth: bool = False) -> web.Application:
    """The broker's real application; the store is never connected (only routes are read)."""
    rt = app.standby_runtime(PgStore("postgresql://127.0.0.1:9/unused"))
    if auth:
        rt.tokens = Keyring(parse_tokens("t"))
    return app.build_app(rt)


@pytest.mark.parametrize("auth", [False, True])
def test_the_document_lists_exactly_the_routes_the_app_serves(auth: bool) -> None:
    a = _app(auth)
    doc = orjson.loads(a[openapi.OPENAPI])
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == set(openapi.served(a.router))
    assert ("get", "/metrics") in documented  # added by metrics.install, outside the tables
    assert ("get", "/v1/queues/{queue}/groups/{group}/stream") in documented
    assert ("security" in doc) is auth
    publish = doc["paths"]["/v1/queues/{queue}/messages"]["post"]["responses"]
    assert {"401", "403", "429"} <= publish.keys() if auth else "403" not in publish
    metrics = doc["paths"]["/metrics"]["get"]["responses"]
    assert ("429" in metrics and "403" not in metrics) if auth else "429" not in metrics
    assert "429" not in doc["paths"]["/healthz"]["get"]["responses"]


async def _new(request: web.Request) -> web.Response:
    return web.Response()


def test_a_route_without_a_description_stops_the_broker() -> None:
    a = _app()
    a.router.add_post("/v1/queues/{queue}/compact", _new)
    compact = re.escape("undescribed [('post', '/v1/queues/{queue}/compact')]")
    with pytest.raises(RuntimeError, match=compact):
        openapi.document(a.router)


def test_a_description_without_a_route_stops_the_broker() -> None:
    a = web.Application()
    a.add_routes(app.probes)
    with pytest.raises(RuntimeError, match=r"not served .*'/v1/queues'"):
        openapi.document(a.router)
