"""GET /openapi.json: built from the wire models at start, never written by hand."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ferry.broker import models as m

routes = web.RouteTableDef()
OPENAPI = web.AppKey("openapi_json", bytes)

Q = "/v1/queues/{queue}"
G = Q + "/groups/{group}"

# (method, path, summary, request model, response model, success status)
OPERATIONS: list[tuple[str, str, str, type[BaseModel] | None, type[BaseModel] | None, int]] = [
    ("get", "/v1/queues", "List queues with stats", None, m.QueueList, 200),
    ("put", Q, "Create or update a queue", m.QueueSettings, m.QueueStats, 200),
    ("get", Q, "Queue stats", None, m.QueueStats, 200),
    ("delete", Q, "Delete a queue and its messages", None, None, 204),
    ("post", Q + "/messages", "Publish (answered once durable)", m.PublishRequest,
     m.PublishResponse, 200),
    ("get", Q + "/messages/{id}", "A message and its state per group", None, m.MessageInfo, 200),
    ("patch", Q + "/messages/{id}", "Change a stored message's priority", m.PriorityChange,
     m.MessageInfo, 200),
    ("put", G, "Create or update a consumer group", m.GroupSettings, m.GroupStats, 200),
    ("get", G, "Group stats", None, m.GroupStats, 200),
    ("delete", G, "Delete a consumer group", None, None, 204),
    ("post", G + "/receive", "Lease messages (long-polls up to wait_ms)", m.ReceiveRequest,
     m.ReceiveResponse, 200),
    ("post", G + "/ack", "Acknowledge deliveries", m.ReceiptsRequest, m.ReceiptsResponse, 200),
    ("post", G + "/nack", "Hand deliveries back (delay or backoff)", m.NackRequest,
     m.ReceiptsResponse, 200),
    ("post", G + "/extend", "Extend leases", m.ExtendRequest, m.ReceiptsResponse, 200),
    ("get", G + "/dead", "Dead letters, paged (limit, cursor)", None, m.DeadList, 200),
    ("post", G + "/dead/redrive", "Move dead letters back to the group", m.RedriveRequest,
     m.RedriveResponse, 200),
]
STREAM = G + "/stream"
WS_MODELS: list[type[BaseModel]] = [m.WsPublish, m.WsSubscribe, m.WsSettle, m.WsReply,
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


def document() -> dict[str, Any]:
    models: set[type[BaseModel]] = {m.ErrorBody, *WS_MODELS}
    for _, _, _, req, resp, _ in OPERATIONS:
        models.update(x for x in (req, resp) if x is not None)
    _, defs = models_json_schema(
        [(x, "validation") for x in sorted(models, key=lambda x: x.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    error = {"description": "error", "content": {"application/json": {"schema": _ref(m.ErrorBody)}}}
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, req, resp, status in OPERATIONS:
        op: dict[str, Any] = {"summary": summary, "parameters": _params(path)}
        if req is not None:
            op["requestBody"] = {
                "required": method == "post",
                "content": {"application/json": {"schema": _ref(req)}},
            }
        ok: dict[str, Any] = {"description": "ok"}
        if resp is not None:
            ok["content"] = {"application/json": {"schema": _ref(resp)}}
        op["responses"] = {str(status): ok, "4XX": error, "5XX": error}
        paths.setdefault(path, {})[method] = op
    paths[STREAM] = {"get": {
        "summary": "Server-Sent Events: one `message` event per Delivery, at most "
                   "max_in_flight unacked",
        "parameters": [*_params(STREAM),
            {"name": "consumer", "in": "query", "required": True, "schema": {"type": "string"}},
            {"name": "max_in_flight", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            {"name": "visibility_timeout_ms", "in": "query",
             "schema": {"type": "integer", "minimum": 1}},
        ],
        "responses": {"200": {"description": "event stream", "content": {
            "text/event-stream": {"schema": _ref(m.Delivery)}}}, "4XX": error},
    }}
    paths["/v1/ws"] = {"get": {
        "summary": "WebSocket: WsPublish/WsSubscribe/WsSettle frames in; WsReply/WsDeliver out",
        "responses": {"101": {"description": "switching protocols"}},
    }}
    for path, summary in (("/healthz", "Alive"), ("/readyz", "Ready to serve"),
                          ("/metrics", "Prometheus metrics")):
        paths[path] = {"get": {"summary": summary, "responses": {"200": {"description": "ok"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Ferry broker", "version": "v1"},
        "paths": paths,
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def install(app: web.Application) -> None:
    app[OPENAPI] = orjson.dumps(document())
    app.add_routes(routes)


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")
