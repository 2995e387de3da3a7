"""POST /api/v1/upload: publish an uploaded DCGM CSV through the same validation as files.

An upload is not split between streamers (it arrived at this one) and is not
checkpointed (the caller holds it and may post it again: the rows' dedup ids make a
repeated upload harmless).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel

from ferry.broker.client import BrokerClient, BrokerError
from ferry.telemetry.parsing.rows import Content, HeaderError, column_positions, valid_rows
from ferry.telemetry.streamer.streaming import (
    BAD_ROWS_KEPT,
    ROWS_PER_MESSAGE,
    BadRow,
    Metrics,
    messages_of,
)

log = logging.getLogger("ferry.telemetry.streamer")
MAX_UPLOAD_BYTES = 64 * 1024 * 1024


class UploadError(ValueError):
    pass


class UploadResult(BaseModel):
    published: int
    bad: int
    bad_rows: list[BadRow]


def read_upload(text: str) -> tuple[list[Content], list[BadRow]]:
    """Valid rows and the reasons for the others; UploadError when no row can be read."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise UploadError("empty upload: expected DCGM CSV with a header line")
        positions = column_positions(header)
        records = [(n, fields) for n, fields in enumerate(reader, 1) if fields]
    except (HeaderError, csv.Error) as e:
        raise UploadError(str(e)) from e
    good, bad = valid_rows([fields for _, fields in records], positions)
    return [row for _, row in good], [
        BadRow(file="upload", record=records[i][0], reason=why) for i, why in bad
    ]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def upload_handler(
    client: BrokerClient, queue: str, metrics: Metrics
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def upload(request: web.Request) -> web.Response:
        try:
            text = (await request.read()).decode()
        except UnicodeDecodeError:
            return _error(400, "invalid_csv", "upload is not UTF-8 text")
        try:
            rows, bad = read_upload(text)
        except UploadError as e:
            return _error(400, "invalid_csv", str(e))
        messages = messages_of(
            [(r, f"upload:{i}") for i, r in enumerate(rows, 1)], ROWS_PER_MESSAGE
        )
        try:
            if messages:
                await client.publish(queue, messages)
        except BrokerError as e:
            log.error("upload not published", extra={"error": str(e)})
            return _error(503, "broker_unavailable", f"nothing was published: {e}")
        metrics.published.inc(len(rows))
        metrics.bad.inc(len(bad))
        for b in bad:
            log.warning("bad row not published", extra=b.model_dump())
        result = UploadResult(published=len(rows), bad=len(bad), bad_rows=bad[:BAD_ROWS_KEPT])
        return web.json_response(result.model_dump())

    return upload
