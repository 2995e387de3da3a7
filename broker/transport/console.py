"""The web console at /console/: static files from the package, read once at start.

The page itself asks for nothing secret, so its files are served without a token (like the
health checks); everything it shows it reads from the API with the token the user types.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

PREFIX = "/console/"
# Every file the console serves and its type: a fixed list, so no path is ever looked up.
FILES = {
    "index.html": "text/html",
    "console.js": "text/javascript",
    "console.css": "text/css",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "uPlot.LICENSE.txt": "text/plain",
}
INDEX = "index.html"
PATHS = {PREFIX: INDEX} | {PREFIX + name: name for name in FILES}  # served path -> file
OPEN = frozenset(PATHS)  # every path of the console: served without a token
CONTENT = web.AppKey("console_files", dict[str, bytes])
# The page loads nothing from elsewhere (no CDN) and talks only to this broker.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def content_type(path: str) -> str:
    return FILES[PATHS[path]]


def install(app: web.Application) -> None:
    """Read the files (a missing one stops the broker at start) and route them."""
    folder = resources.files("ferry.broker.console")
    app[CONTENT] = {name: folder.joinpath(name).read_bytes() for name in FILES}
    for path in PATHS:
        app.router.add_get(path, _serve)


async def _serve(request: web.Request) -> web.Response:
    name = PATHS[request.path]
    return web.Response(body=request.app[CONTENT][name], headers=HEADERS,
                        content_type=FILES[name], charset="utf-8")
