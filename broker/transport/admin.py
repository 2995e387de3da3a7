"""Queues and groups: create/update, inspect, delete."""

from __future__ import annotations

from aiohttp import web

from ferry.broker.models import GroupSettings, QueueList, QueueSettings, parse
from ferry.broker.transport.runtime import RUNTIME, now_ms
from ferry.broker.transport.views import (
    group_stats,
    json_response,
    name_param,
    queue_stats,
    read_body,
)

routes = web.RouteTableDef()


@routes.put("/v1/queues/{queue}")
async def put_queue(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    name = name_param(request, "queue")
    settings = parse(QueueSettings, await read_body(request))
    now = now_ms()
    q, created = rt.core.put_queue(name, settings, now)
    await rt.commit()
    return json_response(queue_stats(q, now), status=201 if created else 200)


@routes.get("/v1/queues")
async def list_queues(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    now = now_ms()
    qs = [queue_stats(q, now) for _, q in sorted(rt.core.queues.items())]
    return json_response(QueueList(queues=qs))


@routes.get("/v1/queues/{queue}")
async def get_queue(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    return json_response(queue_stats(rt.core.queue(name_param(request, "queue")), now_ms()))


@routes.delete("/v1/queues/{queue}")
async def delete_queue(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    name = name_param(request, "queue")
    qid = rt.core.queue(name).qid
    rt.core.delete_queue(name)
    await rt.commit()
    rt.signals.notify(("q", qid))
    return web.Response(status=204)


@routes.put("/v1/queues/{queue}/groups/{group}")
async def put_group(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    queue, group = name_param(request, "queue"), name_param(request, "group")
    settings = parse(GroupSettings, await read_body(request))
    now = now_ms()
    g, created = rt.core.put_group(queue, group, settings, now)
    await rt.commit()
    return json_response(group_stats(g, now), status=201 if created else 200)


@routes.get("/v1/queues/{queue}/groups/{group}")
async def get_group(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    g = rt.core.group(name_param(request, "queue"), name_param(request, "group"))
    return json_response(group_stats(g, now_ms()))


@routes.delete("/v1/queues/{queue}/groups/{group}")
async def delete_group(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    queue, group = name_param(request, "queue"), name_param(request, "group")
    qid = rt.core.queue(queue).qid
    rt.core.delete_group(queue, group)
    await rt.commit()
    rt.signals.notify(("q", qid))
    return web.Response(status=204)
