"""Wake-ups for long polls and streams: waiters park on keys, changes notify keys."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable


class Signals:
    def __init__(self) -> None:
        self._waiters: dict[Hashable, list[asyncio.Future[None]]] = {}

    async def wait(self, keys: Iterable[Hashable], seconds: float) -> bool:
        """Until any key is notified (True) or the timeout passes (False)."""
        if seconds <= 0:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        keys = list(keys)
        for key in keys:
            self._waiters.setdefault(key, []).append(fut)
        try:
            async with asyncio.timeout(seconds):
                await fut
            return True
        except TimeoutError:
            return False
        finally:
            for key in keys:
                lst = self._waiters.get(key)
                if lst is not None and fut in lst:
                    lst.remove(fut)
                    if not lst:
                        del self._waiters[key]

    def notify(self, key: Hashable) -> None:
        lst = self._waiters.pop(key, None)
        if lst:
            for fut in lst:
                if not fut.done():
                    fut.set_result(None)

    def notify_all(self) -> None:
        for key in list(self._waiters):
            self.notify(key)
