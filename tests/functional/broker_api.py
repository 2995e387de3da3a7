"""A few lines of aiohttp for driving a broker in tests (no client library on purpose)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Any

import aiohttp
from testsupport.waiting import eventually_async


class Api:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str) -> AsyncIterator[Api]:
        """An `Api` on `url` in a session of its own, closed when the block ends."""
        async with aiohttp.ClientSession() as session:
            yield cls(session, url)

    async def call(
        self, method: str, path: str, body: Any = None, *, data: bytes | IO[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"headers": headers or {}}
        if data is not None:
            kwargs["data"] = data
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.url + path, **kwargs) as r:
            text = await r.text()
            if r.content_type == "application/json" and text:
                return r.status, await r.json()
            return r.status, text

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, doc = await self.call(method, path, body)
        assert 200 <= status < 300, (method, path, status, doc)
        return doc

    async def refused(self, method: str, path: str, body: Any = None, status: int = 400,
                      code: str = "bad_request", **options: Any) -> Any:
        """The error document of a call that must answer `status` with the error `code`."""
        got, doc = await self.call(method, path, body, **options)
        assert (got, doc["error"]["code"]) == (status, code), (method, path, got, doc)
        return doc

    async def create(self, queue: str, *groups: str) -> None:
        """A queue and groups on it, with default settings."""
        await self.ok("PUT", f"/v1/queues/{queue}")
        for group in groups:
            await self.ok("PUT", f"/v1/queues/{queue}/groups/{group}")

    async def publish(self, queue: str, *messages: dict[str, Any]) -> list[str]:
        doc = await self.ok("POST", f"/v1/queues/{queue}/messages", {"messages": list(messages)})
        return list(doc["ids"])

    async def receive(
        self, queue: str, group: str, consumer: str = "c", max: int = 10, wait_ms: int = 0,
        **extra: Any,
    ) -> list[dict[str, Any]]:
        doc = await self.ok(
            "POST", f"/v1/queues/{queue}/groups/{group}/receive",
            {"consumer": consumer, "max": max, "wait_ms": wait_ms, **extra},
        )
        return list(doc["messages"])

    async def restored(self) -> None:
        """Until the broker leads and has read every stored message back in: it serves
        already while it does, and figures taken before cover only what it read so far."""

        async def done() -> bool:
            status, doc = await self.call("GET", "/readyz")
            return status == 200 and doc["restoring"] is False

        await eventually_async(done, f"{self.url} ready, every stored message read back in")

    async def seen(self, queue: str, group: str, *consumers: str) -> None:
        """Until the group lists these consumers: the broker took their receive in, so a
        long poll of theirs that found nothing is parked (nothing awaits in between)."""

        async def listed() -> bool:
            doc = await self.ok("GET", f"/v1/queues/{queue}/groups/{group}")
            return set(consumers) <= {c["name"] for c in doc["consumers"]}

        await eventually_async(listed, f"{consumers} to be seen by {queue}/{group}")

    async def settle(self, op: str, queue: str, group: str, receipts: list[str],
                     **extra: Any) -> list[str]:
        doc = await self.ok(
            "POST", f"/v1/queues/{queue}/groups/{group}/{op}", {"receipts": receipts, **extra}
        )
        return [r["status"] for r in doc["results"]]
