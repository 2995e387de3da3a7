"""Lag values for the metrics API: which groups a request selects, and their fresh lag.

Values come from the brokers' group stats, cached for `ttl` seconds so a burst of HPA
syncs (one per HPA every sync period) costs one broker call per group, and coalesced so
concurrent requests for one group share a single call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ferry.broker.models import GroupStats
from ferry.operator.clients.kubereads import KubeReader, KubernetesReadError
from ferry.operator.metricsapi.selectors import Selector
from ferry.operator.reconcile import metadata
from ferry.operator.reconcile.autoscaling import metric_labels, metric_value


@dataclass(frozen=True)
class GroupRef:
    """A consumer group and the broker that holds it."""

    namespace: str
    queue: str
    group: str
    broker_url: str
    token: str | None = field(default=None, repr=False)  # from the Secret status names

    @property
    def labels(self) -> dict[str, str]:
        return metric_labels(self.namespace, self.queue, self.group)


class Directory(Protocol):
    async def groups(self, namespace: str) -> Sequence[GroupRef]: ...


class StatsClient(Protocol):  # made per broker URL and token
    async def group_stats(self, queue: str, group: str) -> GroupStats: ...
    async def close(self) -> None: ...


class DirectoryError(Exception):
    """The list of consumer groups could not be read (the Kubernetes API did not answer)."""


class LagNotKnownError(Exception):
    """The broker answered, but its figure is not the lag yet (see metric_value)."""


class LagUnavailableError(Exception):
    """Some selected groups' lag could not be read; a partial sum would under-scale."""

    def __init__(self, failures: dict[GroupRef, str]) -> None:
        super().__init__()
        self.failures = failures

    def __str__(self) -> str:
        parts = [f"{ref.namespace}/{ref.queue}/{ref.group} at {ref.broker_url}: {why}"
                 for ref, why in self.failures.items()]
        return "lag unavailable for " + "; ".join(parts)


class KubeDirectory:
    """ConsumerGroup resources of a namespace, listed at most once per `ttl` seconds.

    A group counts once the operator has found its broker (status.endpoint); its name on
    the broker is the resource's name, its token the Secret key status.tokenSecret names
    (read with the listing, so as often).
    """

    def __init__(self, lister: KubeReader, *, ttl: float = 5.0) -> None:
        self._lister = lister
        self._ttl = ttl
        self._seen: dict[str, tuple[list[GroupRef], float]] = {}

    async def groups(self, namespace: str) -> Sequence[GroupRef]:
        seen = self._seen.get(namespace)
        if seen is not None and time.monotonic() - seen[1] < self._ttl:
            return seen[0]
        try:
            items = await self._lister.list_objects(metadata.GROUP, metadata.VERSION, namespace,
                                                    "consumergroups")
            refs = [await self._with_token(ref, item)
                    for ref, item in found_groups(namespace, items)]
        except KubernetesReadError as error:
            raise DirectoryError(str(error)) from error
        self._seen[namespace] = (refs, time.monotonic())
        return refs

    async def _with_token(self, ref: GroupRef, item: dict[str, Any]) -> GroupRef:
        secret = (item.get("status") or {}).get("tokenSecret") or {}
        if not secret.get("name"):
            return ref
        token = await self._lister.secret_value(ref.namespace, secret["name"],
                                                secret.get("key") or "token")
        return GroupRef(ref.namespace, ref.queue, ref.group, ref.broker_url, token)


def found_groups(namespace: str, items: Sequence[dict[str, Any]]
           ) -> list[tuple[GroupRef, dict[str, Any]]]:
    """The groups whose broker the operator has found, each with the item it comes from."""
    return [(GroupRef(namespace, item["spec"]["queue"], item["metadata"]["name"],
                      item["status"]["endpoint"]), item)
            for item in items
            if (item.get("status") or {}).get("endpoint") and (item.get("spec") or {}).get("queue")]


class StaticDirectory:
    """Groups named on the command line: `NAMESPACE/QUEUE/GROUP=BROKER_URL`."""

    def __init__(self, refs: Sequence[GroupRef]) -> None:
        self._refs = tuple(refs)

    @classmethod
    def parse(cls, specs: Sequence[str]) -> StaticDirectory:
        refs = []
        for spec in specs:
            path, sep, url = spec.partition("=")
            parts = path.split("/")
            if not sep or len(parts) != 3 or not all(parts) or not url:
                raise ValueError(f"--group {spec!r}: expected NAMESPACE/QUEUE/GROUP=BROKER_URL")
            refs.append(GroupRef(parts[0], parts[1], parts[2], url))
        return cls(refs)

    async def groups(self, namespace: str) -> Sequence[GroupRef]:
        return [ref for ref in self._refs if ref.namespace == namespace]


class StatsCache:
    """group -> (metric value, when read), at most `ttl` seconds old; one client per broker.

    `reads` counts broker calls, `hits` answers given without one (cached or shared).
    """

    def __init__(self, client_for: Callable[[str, str | None], StatsClient], *,
                 ttl: float = 2.0) -> None:
        self._client_for = client_for
        self._ttl = ttl
        self._clients: dict[tuple[str, str | None], StatsClient] = {}
        self._values: dict[GroupRef, tuple[int, float]] = {}
        self._pending: dict[GroupRef, asyncio.Future[int]] = {}
        self.hits = 0
        self.reads = 0

    async def value(self, ref: GroupRef) -> int:
        cached = self._values.get(ref)
        if cached is not None and time.monotonic() - cached[1] < self._ttl:
            self.hits += 1
            return cached[0]
        if (pending := self._pending.get(ref)) is not None:
            self.hits += 1  # shares the read already under way
            return await asyncio.shield(pending)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            value = await self._read(ref)
        except BaseException as error:
            future.set_exception(error)
            # Nobody else may be waiting: retrieve it so asyncio does not warn.
            future.exception()
            raise
        else:
            future.set_result(value)
            self._values[ref] = (value, time.monotonic())
            return value
        finally:
            del self._pending[ref]

    async def _read(self, ref: GroupRef) -> int:
        where = (ref.broker_url, ref.token)
        client = self._clients.get(where)
        if client is None:
            client = self._clients[where] = self._client_for(*where)
        self.reads += 1
        value = metric_value(await client.group_stats(ref.queue, ref.group))
        if value is None:
            raise LagNotKnownError("the broker restarted and is still reading its stored "
                                   "messages back")
        return value

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.close() for c in clients))


class LagReader:
    def __init__(self, directory: Directory, cache: StatsCache,
                 errors: tuple[type[Exception], ...] = (OSError,)) -> None:
        self._directory = directory
        self._cache = cache
        self._errors: tuple[type[Exception], ...] = (*errors, LagNotKnownError)

    async def samples(self, namespace: str,
                      selector: Selector) -> list[tuple[dict[str, str], int]]:
        """(labels, value) of every group in `namespace` the selector matches."""
        refs = [r for r in await self._directory.groups(namespace) if selector.matches(r.labels)]
        results = await asyncio.gather(*(self._guarded(self._cache.value(r)) for r in refs))
        failures = {r: why for r, (_, why) in zip(refs, results, strict=True) if why is not None}
        if failures:
            raise LagUnavailableError(failures)
        return [(r.labels, value) for r, (value, _) in zip(refs, results, strict=True)]

    async def _guarded(self, read: Awaitable[int]) -> tuple[int, str | None]:
        try:
            return await read, None
        except self._errors as error:
            return 0, str(error) or type(error).__name__
