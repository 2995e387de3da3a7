"""What the cluster offers autoscalers: who serves external metrics, whether KEDA is there.

Cluster-wide facts every ConsumerGroup pass needs; read at most once per `ttl` seconds,
by one pass while the others wait for it, so that many groups cost the API server a few
GETs per period, not a few each.
`reconcile.providers` turns them into a decision.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ferry.operator.clients.errors import KubeError
from ferry.operator.clients.kube import KubeClient
from ferry.operator.identity import KEDA_API_VERSION

EXTERNAL_METRICS = "/apis/external.metrics.k8s.io/v1beta1"
KEDA_API = f"/apis/{KEDA_API_VERSION}"
APISERVICES = "/apis/apiregistration.k8s.io/v1/apiservices"


def backing_service(apiservice: Mapping[str, Any]) -> str | None:
    """The "<namespace>/<service>" an APIService routes to; None: the API server serves it."""
    ref = (apiservice.get("spec") or {}).get("service")
    return f"{ref.get('namespace')}/{ref.get('name')}" if ref else None


@dataclass(frozen=True)
class Offered:
    registered: bool                     # an APIService for external metrics exists
    served_by: str                       # its "<namespace>/<service>" ("" when none)
    metric_names: frozenset[str] | None  # what its discovery lists; None: it did not answer
    keda_installed: bool                 # the API server serves keda.sh/v1alpha1


class MetricsApis:
    def __init__(self, kube: KubeClient, *, apiservice: str, ttl: float = 30.0) -> None:
        self._kube, self._apiservice, self._ttl = kube, apiservice, ttl
        self._seen: Offered | None = None
        self._at = 0.0
        # One read at a time: the groups whose passes come due together while the copy is
        # stale wait for that read instead of each making its own.
        self._reading = asyncio.Lock()

    async def offered(self) -> Offered:
        async with self._reading:
            if self._seen is None or time.monotonic() - self._at >= self._ttl:
                self._seen, self._at = await self._read(), time.monotonic()
            return self._seen

    async def _read(self) -> Offered:
        try:
            keda = await self._kube.read(KEDA_API) is not None
        except KubeError:
            keda = False
        service = await self._kube.read(f"{APISERVICES}/{self._apiservice}")
        if service is None:
            return Offered(registered=False, served_by="", metric_names=frozenset(),
                           keda_installed=keda)
        served_by = backing_service(service) or "the API server itself"
        try:
            discovery = await self._kube.read(EXTERNAL_METRICS)
        except KubeError:  # registered but not answering (503): who knows what it serves
            discovery = None
        names = (frozenset(str(r.get("name")) for r in discovery.get("resources") or [])
                 if discovery is not None else None)
        return Offered(registered=True, served_by=served_by, metric_names=names,
                       keda_installed=keda)
