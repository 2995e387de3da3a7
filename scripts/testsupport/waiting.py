"""Poll until a condition holds: the one way tests and tools wait for something."""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class GaveUpError(AssertionError):
    """The condition did not hold before the deadline (an AssertionError: tests fail)."""


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 120.0,
               interval: float = 0.2) -> T:
    """Call `probe` until it returns something but None or False, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise GaveUpError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


async def eventually_async(probe: Callable[[], Awaitable[T | None]], what: str,
                           patience: float = 120.0, interval: float = 0.1) -> T:
    """`eventually` for an async probe, without blocking the event loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        value = await probe()
        if value is not None and value is not False:
            return value
        if loop.time() > deadline:
            raise GaveUpError(f"gave up after {patience:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


def answers(url: str, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> bool:
    """Whether `url` answers a GET with 2xx now (`context`: the TLS settings for https)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError):
        return False
