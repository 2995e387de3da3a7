"""GET /openapi.json: built at start from the app's router and the wire models.

The paths come from the routes the application registered (`app.router`), so the
document cannot list a route the server lacks; a served route without an entry
here, or an entry without a route, stops the broker at start (`document`).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ferry.broker import models as m
from ferry.broker.transport import console, watching
from ferry.broker.transport.rights import ADMIN, ROUTE_RIGHTS
from ferry.kit.tracing import TRACEPARENT, TRACEPARENT_PATTERN

routes = web.RouteTableDef()
OPENAPI = web.AppKey("openapi_json", bytes)

Q = "/v1/queues/{queue}"
G = Q + "/groups/{group}"

CREATED_OR_OK = (201, 200)  # PUT answers 201 when it created the object, 200 when it updated it

# (method, path, summary, request model, response model, success status or statuses)
OPERATIONS: list[
    tuple[str, str, str, type[BaseModel] | None, type[BaseModel] | None, int | tuple[int, ...]]
] = [
    ("get", "/v1/queues", "List queues with stats", None, m.QueueList, 200),
    ("put", Q, "Create or update a queue", m.QueueSettings, m.QueueStats, CREATED_OR_OK),
    ("get", Q, "Queue stats", None, m.QueueStats, 200),
    ("delete", Q, "Delete a queue and its messages", None, None, 204),
    ("post", Q + "/messages", "Publish (answered once durable)", m.PublishRequest,
     m.PublishResponse, 200),
    ("get", Q + "/messages", "Browse stored messages, oldest first, a page at a time, "
     "filtered by a group's state, key or priority (a peek: nothing is leased)", None,
     m.MessagePage, 200),
    ("get", Q + "/messages/{id}", "A message and its state per group", None, m.MessageInfo, 200),
    ("patch", Q + "/messages/{id}", "Change a stored message's priority", m.PriorityChange,
     m.MessageInfo, 200),
    ("delete", Q + "/messages/{id}", "Cancel a message: gone for every group (a lease on it "
     "no longer acks: stale); answered once durable", None, None, 204),
    ("post", Q + "/purge", "Purge the messages ready in every group (a queue without groups: "
     "every due message); in flight, delayed and dead stay; answered once durable", None,
     m.PurgeResponse, 200),
    ("put", G, "Create or update a consumer group", m.GroupSettings, m.GroupStats,
     CREATED_OR_OK),
    ("get", G, "Group stats (?wait_ms=N: once the group has a backlog, or after N ms)", None,
     m.GroupStats, 200),
    ("delete", G, "Delete a consumer group", None, None, 204),
    ("post", G + "/receive", "Lease messages (long-polls up to wait_ms)", m.ReceiveRequest,
     m.ReceiveResponse, 200),
    ("post", G + "/ack", "Acknowledge deliveries", m.ReceiptsRequest, m.ReceiptsResponse, 200),
    ("post", G + "/nack", "Hand deliveries back (delay or backoff)", m.NackRequest,
     m.ReceiptsResponse, 200),
    ("post", G + "/extend", "Extend leases", m.ExtendRequest, m.ReceiptsResponse, 200),
    ("get", G + "/dead", "Dead letters, paged (limit, cursor)", None, m.DeadList, 200),
    ("post", G + "/purge", "Purge the messages ready for the group (done for it, as if "
     "acked); in flight, delayed and dead stay; answered once durable", None,
     m.PurgeResponse, 200),
    ("post", G + "/dead/redrive", "Move dead letters back to the group", m.RedriveRequest,
     m.RedriveResponse, 200),
]
STREAM = G + "/stream"
WS_MODELS: list[type[BaseModel]] = [m.WsPublish, m.WsSubscribe, m.WsSettle, m.WsBrowse,
                                    m.WsCancel, m.WsPurge, m.WsUnsubscribe, m.WsReply,
                                    m.WsDeliver, m.Delivery]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _params(path: str) -> list[dict[str, Any]]:
    out = []
    for name in ("queue", "group", "id"):
        if "{" + name + "}" in path:
            schema: dict[str, Any] = {"type": "string"}
            if name != "id":
                schema["pattern"] = m.NAME_PATTERN
            out.append({"name": name, "in": "path", "required": True, "schema": schema})
    return out


def _query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


# Query parameters, with the bounds the routes enforce (views.int_query), by path or by
# "method path" where methods of one path differ.
_PAGE = [_query("limit", {"type": "integer", "minimum": 1, "maximum": m.PAGE_MAX}),
         _query("cursor", {"type": "string", "pattern": m.CURSOR_PATTERN})]


def _query_of(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A query model's fields as query parameters: optional ones without their null,
    enums inline (a parameter has no components of its own)."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    out = []
    for name, prop in schema["properties"].items():
        variants = [v for v in prop.get("anyOf", [prop]) if v.get("type") != "null"]
        (one,) = variants
        ref = one.get("$ref")
        one = dict(defs[ref.rsplit("/", 1)[-1]]) if ref else dict(one)
        if "description" in prop:
            one["description"] = prop["description"]
        one.pop("title", None)
        out.append(_query(name, one))
    return out


QUERY: dict[str, list[dict[str, Any]]] = {
    "post " + Q + "/messages": [{
        "name": TRACEPARENT, "in": "header", "required": False,
        "description": "W3C trace context of the producer: stored in each message's headers "
                       "unless the message sets its own traceparent",
        "schema": {"type": "string", "pattern": TRACEPARENT_PATTERN}}],
    G + "/dead": _PAGE,
    "get " + Q + "/messages": _query_of(m.BrowseQuery),
    G + "/stream": [
        _query("consumer", {"type": "string", "pattern": m.CONSUMER_PATTERN}, required=True),
        _query("max_in_flight", {"type": "integer", "minimum": 1, "maximum": 10_000}),
        _query("visibility_timeout_ms",
               {"type": "integer", "minimum": 0, "maximum": m.MAX_LEASE_MS}),
    ],
    watching.PATH: [_query("interval_ms", {"type": "integer",
                                           "minimum": watching.MIN_INTERVAL_MS,
                                           "maximum": watching.MAX_INTERVAL_MS})],
}


def _json(schema: dict[str, Any], description: str = "ok",
          media: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


NOT_DESCRIBED = {("get", "/openapi.json")}  # the document itself


def served(router: web.UrlDispatcher) -> list[tuple[str, str]]:
    """(method, path) of every route the router serves, in order; HEAD twins of GETs left out."""
    out = [(r.method.lower(), r.resource.canonical) for r in router.routes()
           if r.method != "HEAD" and r.resource is not None]
    return [x for x in out if x not in NOT_DESCRIBED]


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(method, path) -> OpenAPI operation, for every route the broker describes."""
    error = _json(_ref(m.ErrorBody), "error")
    errors = {"4XX": error, "5XX": error}
    ops: dict[tuple[str, str], dict[str, Any]] = {}
    for method, path, summary, req, resp, status in OPERATIONS:
        op: dict[str, Any] = {"summary": summary,
                              "parameters": _params(path) + QUERY.get(path, [])
                              + QUERY.get(f"{method} {path}", [])}
        if req is not None:
            op["requestBody"] = {
                # PUT takes an empty body as `{}` (every setting has a default)
                "required": method != "put",
                "content": {"application/json": {"schema": _ref(req)}},
            }
        ok: dict[str, Any] = {"description": "ok"}
        if resp is not None:
            ok = _json(_ref(resp))
        statuses = status if isinstance(status, tuple) else (status,)
        op["responses"] = {**{str(s): ok for s in statuses}, **errors}
        ops[method, path] = op
    ops["get", STREAM] = {
        "summary": "Server-Sent Events: one `message` event per Delivery, at most "
                   "max_in_flight unacked",
        "parameters": [*_params(STREAM), *QUERY[STREAM]],
        "responses": {"200": _json(_ref(m.Delivery), "event stream", "text/event-stream"),
                      **errors},
    }
    ops["get", "/v1/ws"] = {
        "summary": "WebSocket: WsPublish/WsSubscribe/WsSettle/WsBrowse/WsCancel/WsPurge/"
                   "WsUnsubscribe frames in; WsReply/WsDeliver out",
        "responses": {"101": {"description": "switching protocols"}, **errors},
    }
    text = {"type": "string"}
    health = {"type": "object", "properties": {"status": text}}
    for path, summary in (("/healthz", "Alive"), ("/readyz", "Ready to serve")):
        ops["get", path] = {"summary": summary, "security": [], "responses": {
            "200": _json(health), "503": _json(health, "not ready")}}
    ops["get", watching.PATH] = {
        "summary": "Server-Sent Events: one `stats` event (every queue's stats) each "
                   "interval_ms, until the client goes",
        "parameters": QUERY[watching.PATH],
        "responses": {"200": _json(_ref(m.StatsEvent), "event stream", "text/event-stream"),
                      **errors},
    }
    for path in console.PATHS:  # the page asks for the token itself: its files are open
        ops["get", path] = {"summary": f"Web console: {console.PATHS[path]}", "security": [],
                            "responses": {"200": _json(text, media=console.content_type(path)),
                                          **errors}}
    ops["get", "/metrics"] = {"summary": "Prometheus metrics", "responses": {
        "200": _json(text, media="text/plain"), **errors}}
    return ops


def _refusals(ops: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The token check's answers (auth.py): 401, 429 (the token's rate) and, where the
    route needs a right (rights.ROUTE_RIGHTS), 403."""
    error = _ref(m.ErrorBody)
    for (method, path), op in ops.items():
        if op.get("security") == []:  # health: open
            continue
        answers = {"401": _json(error, "no bearer token, or one the broker does not know"),
                   "429": _json(error, "over the token's rate (rate=N/s); see Retry-After")}
        if ROUTE_RIGHTS.get((method.upper(), path), ADMIN):
            answers["403"] = _json(error, "the token lacks the right, or its queues= globs "
                                          "do not match the queue")
        op["responses"] = {**op["responses"], **dict(sorted(answers.items()))}


def document(router: web.UrlDispatcher, auth: bool = False) -> dict[str, Any]:
    """The OpenAPI document of the router's routes.

    With `auth` (a --token-file) every route but health needs a token. Raises
    RuntimeError when a served route has no description here or the reverse.
    """
    ops = _operations()
    if auth:
        _refusals(ops)
    routes_ = served(router)
    if set(routes_) != ops.keys():
        raise RuntimeError(
            f"OpenAPI and routes differ: undescribed {sorted(set(routes_) - ops.keys())}, "
            f"not served {sorted(ops.keys() - set(routes_))}")
    models: set[type[BaseModel]] = {m.ErrorBody, m.StatsEvent, *WS_MODELS}
    for _, _, _, req, resp, _ in OPERATIONS:
        models.update(x for x in (req, resp) if x is not None)
    _, defs = models_json_schema(
        [(x, "validation") for x in sorted(models, key=lambda x: x.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for method, path in routes_:
        paths.setdefault(path, {})[method] = ops[method, path]
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Ferry broker", "version": "v1"},
        "paths": paths,
        "components": {"schemas": defs["$defs"]},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc


def install(app: web.Application, auth: bool) -> None:
    """Serve the document; call last, once every other route is registered."""
    app.add_routes(routes)
    app[OPENAPI] = orjson.dumps(document(app.router, auth))


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")
