"""Whether the cluster's one external metrics APIService routes to this server.

A cluster has one `v1beta1.external.metrics.k8s.io`. Where KEDA, prometheus-adapter or
Datadog already holds it, this server receives no requests: instead of serving in silence
it says so (a warning in the log, /readyz 503 with reason `apiservice_taken` and who holds
it, the gauge ferry_metrics_api_apiservice{state}); /healthz stays 200, since restarting
would change nothing. Ferry never takes the APIService over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ferry.operator.clients.errors import KubeError
from ferry.operator.clients.kube import KubeClient
from ferry.operator.clients.metricsapis import APISERVICES, backing_service
from ferry.operator.reconcile.providers import APISERVICE

log = logging.getLogger("ferry.metricsapi")
APISERVICE_PATH = f"{APISERVICES}/{APISERVICE}"
CHECK_SECONDS = 30.0


class Holder(StrEnum):
    OURS = "ours"          # the APIService routes to this server's Service
    TAKEN = "taken"        # it routes somewhere else
    ABSENT = "absent"      # not registered (the component's APIService not applied yet)
    UNKNOWN = "unknown"    # could not be read


PROBLEMS = {Holder.TAKEN: "apiservice_taken", Holder.ABSENT: "apiservice_absent"}


@dataclass(frozen=True)
class Seen:
    holder: Holder
    served_by: str = ""    # "<namespace>/<service>", "local" for an in-process API

    @property
    def problem(self) -> str | None:
        """Why this server is not the one HPAs reach (None when it is, or not yet known)."""
        return PROBLEMS.get(self.holder)

    @property
    def message(self) -> str:
        if self.holder is Holder.TAKEN:
            return (f"{APISERVICE} is served by {self.served_by}, not by this server: "
                    "HorizontalPodAutoscalers never ask it; Ferry does not take the "
                    "APIService over. Use provider KEDA (or Auto) for ConsumerGroups, or "
                    "remove this component")
        if self.holder is Holder.ABSENT:
            return f"{APISERVICE} is not registered: no HPA can reach this server yet"
        return f"{APISERVICE} routes to this server"


def seen(apiservice: Mapping[str, Any] | None, namespace: str, service: str) -> Seen:
    """Who holds the APIService, from the object as read (None: not registered). Pure."""
    if apiservice is None:
        return Seen(Holder.ABSENT)
    served_by = backing_service(apiservice)
    if served_by is None:
        return Seen(Holder.TAKEN, "local")
    ours = served_by == f"{namespace}/{service}"
    return Seen(Holder.OURS if ours else Holder.TAKEN, served_by)


class Watch:
    """Reads the APIService every CHECK_SECONDS; logs each change of holder."""

    def __init__(self, kube: KubeClient, namespace: str, service: str,
                 every: float = CHECK_SECONDS) -> None:
        self._kube, self._namespace, self._service = kube, namespace, service
        self._every = every
        self.last = Seen(Holder.UNKNOWN)

    async def check(self) -> Seen:
        try:
            now = seen(await self._kube.read(APISERVICE_PATH), self._namespace, self._service)
        except KubeError as error:
            log.warning("cannot read the APIService", extra={"apiservice": APISERVICE,
                                                               "error": str(error)})
            now = Seen(Holder.UNKNOWN)
        if now != self.last and now.holder is not Holder.UNKNOWN:
            level = logging.INFO if now.holder is Holder.OURS else logging.WARNING
            log.log(level, now.message, extra={"apiservice": APISERVICE,
                                               "holder": now.holder.value,
                                               "served_by": now.served_by})
        self.last = now
        return now

    async def _loop(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self._every)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._loop(), name="ferry-apiservice-watch")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
