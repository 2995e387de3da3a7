"""The broker's OpenAPI document lists exactly the routes the server registers."""

from __future__ import annotations

import pytest
from aiohttp import web

from ferry.broker.transport import admin, app, messaging, openapi, socket_api, streaming

pytestmark = pytest.mark.unit

UNDOCUMENTED = {("get", "/openapi.json"), ("get", "/metrics")}  # the document itself; text


def _routes(*tables: web.RouteTableDef) -> set[tuple[str, str]]:
    return {(r.method.lower(), r.path) for t in tables for r in t
            if isinstance(r, web.RouteDef)}


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    served = _routes(app.probes, admin.routes, messaging.routes, streaming.routes,
                     socket_api.routes, openapi.routes)
    documented = {(method, path) for path, ops in openapi.document()["paths"].items()
                  for method in ops}
    assert served - UNDOCUMENTED == documented - UNDOCUMENTED
    assert ("get", "/metrics") in documented  # added by metrics.install, outside the tables
